"""Runs at once (execution.max_parallel): the loop with a fake runtime that checks what it is given.

The runtime is fake (it holds a run for a while instead of starting an agent) and checks, while
runs are in flight, that no two of them share a GPU or a CPU; everything else (the loop, the
launcher, the manifest, the signal handling, the result files) is the real code.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _synthetic import synthetic_result

from harness.config.study import Study
from harness.config.sweep import expand
from harness.controller import loop as loop_module
from harness.controller import placement as placement_module
from harness.controller.loop import StudyRun
from harness.controller.runtimes.base import Orphan, RunJob, RunOutcome
from harness.errors import Interrupted
from harness.results import events
from harness.results import manifest as mio
from harness.results.io import atomic_write_json
from harness.results.schema import GpuLibrary, ImageInfo, Timings

FOUR_CPUS = [0, 1, 2, 3]


class FakeRuntime:
    """Holds each run ``hold_s`` (or until stopped), then leaves a result; checks disjointness."""

    name = "fake"

    def __init__(self, plan: Any, hold_s: float = 0.3, fail: set[str] | None = None,
                 timeout: set[str] | None = None) -> None:
        self.plan = plan
        self.hold_s = hold_s
        self.fail = fail or set()
        self.timeout = timeout or set()
        self.lock = threading.Lock()
        self.in_flight: dict[str, RunJob] = {}
        self.max_in_flight = 0
        self.clashes: list[str] = []
        self.jobs: list[RunJob] = []
        self.halt = threading.Event()
        self.stopping = False

    def model_path_for_agent(self, job: RunJob) -> str:
        return "m"

    def dataset_path_for_agent(self, dataset: Any) -> str:
        return str(dataset.path)

    def gpu_library_for_agent(self, job: RunJob) -> GpuLibrary:
        return job.gpu_library

    def prepare(self, image: str) -> ImageInfo | None:
        return None

    def run(self, job: RunJob) -> RunOutcome:
        with self.lock:
            if self.stopping:
                return RunOutcome(exit_code=None, duration_s=0.0, error="not started")
            for other in self.in_flight.values():
                if set(other.gpus) & set(job.gpus):
                    self.clashes.append(f"{job.run_id} and {other.run_id} share GPUs")
                if job.cpus and other.cpus and set(other.cpus) & set(job.cpus):
                    self.clashes.append(f"{job.run_id} and {other.run_id} share CPUs")
            self.in_flight[job.run_id] = job
            self.jobs.append(job)
            self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        began = time.time()
        stopped = self.halt.wait(self.hold_s)
        ended = time.time()
        with self.lock:
            del self.in_flight[job.run_id]
        if stopped:
            return RunOutcome(exit_code=143, duration_s=ended - began)
        if job.run_id in self.timeout:
            return RunOutcome(exit_code=143, duration_s=ended - began, timed_out=True)
        if job.run_id in self.fail:
            return RunOutcome(exit_code=1, duration_s=ended - began, error="boom")
        planned = next(r for r in self.plan.runs if r.run_id == job.run_id)
        result = synthetic_result(self.plan, planned, None, 100.0)
        result.timings = Timings(window_s=ended - began - 0.02, window_start_unix=began + 0.01,
                                 window_end_unix=ended - 0.01)
        atomic_write_json(job.run_dir / "result.json", result)
        return RunOutcome(exit_code=0, duration_s=ended - began)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
        self.halt.set()

    def kill(self) -> None:
        self.stop()

    def find_orphans(self, study: str) -> list[Orphan]:
        return []

    def reap(self, orphan: Orphan) -> tuple[int | None, bytes]:
        return None, b""

    def reconnect(self) -> None:
        """Nothing to reconnect to."""


def make(tmp_path: Path, *, experiment: dict[str, Any] | None = None,
         sweep: dict[str, list[Any]] | None = None, cycles: int = 2,
         hold_s: float = 0.3, **execution: Any) -> tuple[StudyRun, FakeRuntime, list[Any]]:
    study = Study(
        name="par",
        experiment={"model": "org/model", "device": "cpu", "precision": "fp32",
                    **(experiment or {})},
        sweep=sweep or {"batch_size": [1, 2]},
        execution={"cycles": cycles, "runner": "local", **execution},
    )
    plan = expand(study)
    study_dir = tmp_path / "par"
    study_dir.mkdir()
    study_file = study_dir / "study.yaml"
    study_file.write_text("name: par\n")
    manifest = mio.new_manifest(plan, study_file)
    runtime = FakeRuntime(plan, hold_s=hold_s)
    seen: list[Any] = []
    run = StudyRun(study, plan, study_dir, runtime, manifest, observer=seen.append,
                   base_dir=tmp_path)
    return run, runtime, seen


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host of 4 CPUs, whatever this one has (the fake runtime pins nothing)."""
    monkeypatch.setattr(loop_module, "host_cpus", lambda: list(FOUR_CPUS))
    monkeypatch.setattr(placement_module, "host_cpus", lambda: list(FOUR_CPUS))


def test_cpu_runs_two_at_once_on_disjoint_cpu_sets(tmp_path, four_cpus) -> None:
    run, runtime, _ = make(tmp_path, max_parallel=2)
    manifest = run.execute()
    assert manifest.state == "complete"
    assert runtime.max_in_flight == 2 and runtime.clashes == []
    assert {job.cpus for job in runtime.jobs} == {(0, 1), (2, 3)}
    for rec in manifest.runs:
        assert rec.status == "done" and rec.cpus in ([0, 1], [2, 3]) and rec.gpus == []
    # each run's window overlapped the other run in flight, and the record says which
    assert all(rec.overlapped_with for rec in manifest.runs)
    by_id = {r.run_id: r for r in manifest.runs}
    for rec in manifest.runs:
        for other in rec.overlapped_with:
            assert by_id[other].cpus != rec.cpus  # never the same slot at the same time
    saved = mio.load(run.dir)
    assert [r.overlapped_with for r in saved.runs] == [r.overlapped_with for r in manifest.runs]


def test_one_at_a_time_is_the_default_and_pins_nothing(tmp_path, four_cpus) -> None:
    run, runtime, seen = make(tmp_path, hold_s=0.05, gap_s=0.01)
    manifest = run.execute()
    assert manifest.state == "complete" and runtime.max_in_flight == 1
    assert all(job.cpus is None for job in runtime.jobs)
    assert all(r.overlapped_with == [] and r.cpus is None for r in manifest.runs)
    kinds = [type(e).__name__ for e in seen]
    # the sequence of the one-after-another loop: each pause falls between two runs
    assert kinds[:5] == ["StudyStarted", "RunStarted", "RunFinished", "Pause", "RunStarted"]


def test_gpu_runs_get_exactly_their_gpus_disjoint_from_the_others(tmp_path) -> None:
    run, runtime, _ = make(
        tmp_path, experiment={"device": "cuda", "backend": "vllm", "precision": "fp16"},
        sweep={"vllm.tensor_parallel_size": [1, 2]}, cycles=3, gpus=[0, 1, 2], max_parallel=3,
    )
    manifest = run.execute()
    assert manifest.state == "complete" and runtime.clashes == []
    assert runtime.max_in_flight >= 2  # a 2-GPU run and a 1-GPU run fit at once on 3 GPUs
    sizes = {p.id: p.experiment.gpus_per_run() for p in run.plan.experiments}
    for rec in manifest.runs:
        assert len(rec.gpus) == sizes[rec.experiment_id] and set(rec.gpus) <= {0, 1, 2}
    assert run.pool.in_use() == []  # every GPU given back


def test_a_failed_and_a_timed_out_run_give_their_gpus_back(tmp_path) -> None:
    run, runtime, _ = make(tmp_path, experiment={"device": "cuda", "precision": "fp16"},
                           cycles=3, gpus=[0, 1], max_parallel=2, max_consecutive_failures=5)
    first, second = run.plan.runs[0].run_id, run.plan.runs[1].run_id
    runtime.fail, runtime.timeout = {first}, {second}
    manifest = run.execute()
    assert manifest.record(first).status == "failed"
    assert manifest.record(second).status == "failed"
    assert manifest.record(second).reason == "timeout"
    assert sum(r.status == "done" for r in manifest.runs) == len(manifest.runs) - 2
    assert run.pool.in_use() == [] and runtime.clashes == []


def test_consecutive_failures_stop_the_study_after_the_runs_in_flight(tmp_path, four_cpus) -> None:
    run, runtime, _ = make(tmp_path, sweep={"batch_size": [1, 2, 3, 4]}, cycles=2,
                           max_parallel=2, max_consecutive_failures=3)
    runtime.fail = {r.run_id for r in run.plan.runs}
    manifest = run.execute()
    assert manifest.state == "aborted" and "3 consecutive failed runs" in (manifest.message or "")
    started = [r for r in manifest.runs if r.attempts]
    assert 3 <= len(started) <= 4 < len(manifest.runs)  # at most the one in flight beside it
    assert all(r.status == "failed" for r in started)
    assert not any(r.status == "running" for r in manifest.runs)


def test_ctrl_c_stops_every_run_in_flight_and_resume_completes(tmp_path, four_cpus) -> None:
    run, runtime, seen = make(tmp_path, hold_s=60, max_parallel=2)

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(runtime.in_flight) < 2:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    began = time.monotonic()
    with pytest.raises(Interrupted, match="harness study resume"):
        run.execute()
    assert time.monotonic() - began < 20
    manifest = mio.load(run.dir)
    statuses = sorted(r.status for r in manifest.runs)
    assert statuses == ["interrupted", "interrupted", "pending", "pending"]
    for rec in manifest.runs:
        if rec.status == "interrupted":
            assert "partial files are in" in (rec.message or "")
            assert rec.run_id in (manifest.message or "")
    assert any(isinstance(e, events.SignalReceived) for e in seen)

    # resume: a new controller runs what is not done, each run exactly once more
    study, plan = run.study, run.plan
    again = FakeRuntime(plan, hold_s=0.05)
    resumed = StudyRun(study, plan, run.dir, again, manifest, base_dir=tmp_path)
    final = resumed.execute()
    assert final.state == "complete"
    assert sorted(job.run_id for job in again.jobs) == sorted(r.run_id for r in plan.runs)
    assert all(r.status == "done" for r in final.runs)


def test_plan_order_is_kept_for_starts(tmp_path, four_cpus) -> None:
    run, _, seen = make(tmp_path, sweep={"batch_size": [1, 2, 3]}, cycles=2, hold_s=0.1,
                        max_parallel=2)
    run.execute()
    started = [e.run.run_id for e in seen if isinstance(e, events.RunStarted)]
    assert started == [r.run_id for r in run.plan.runs]
    assert all(e.placement.startswith("cpus ") for e in seen if isinstance(e, events.RunStarted))


def test_a_lost_controller_with_two_runs_in_flight_is_recovered(tmp_path, four_cpus) -> None:
    run, runtime, seen = make(tmp_path, max_parallel=2)
    first, second = run.plan.runs[0], run.plan.runs[1]
    # what a controller killed mid-study leaves: two runs running, one with a complete result
    for planned in (first, second):
        rec = run.manifest.record(planned.run_id)
        rec.status, rec.attempts, rec.started_at = "running", 1, mio.now_iso()
        (run.dir / "runs" / planned.run_id).mkdir(parents=True)
    result = synthetic_result(run.plan, first, None, 100.0)
    atomic_write_json(run.dir / "runs" / first.run_id / "result.json", result)
    reaped: list[str] = []

    def orphans(study: str) -> list[Orphan]:
        return [] if reaped else [
            Orphan(container=None, container_id=f"c{p.run_id}", study="par", run_id=p.run_id,
                   run_dir=run.dir / "runs" / p.run_id, study_dir=run.dir,
                   controller_pid=None, running=True)
            for p in (first, second)]

    def reap(orphan: Orphan) -> tuple[int | None, bytes]:
        reaped.append(orphan.run_id)
        return 137, b"stopped by recovery\n"

    runtime.find_orphans = orphans  # type: ignore[method-assign]
    runtime.reap = reap  # type: ignore[method-assign]
    mio.save(run.manifest, run.dir)
    manifest = run.execute()
    assert sorted(reaped) == sorted([first.run_id, second.run_id])
    assert manifest.state == "complete"
    recovered = {e.run_id: e.status for e in seen if isinstance(e, events.RunRecovered)}
    assert recovered == {first.run_id: "done", second.run_id: "interrupted"}
    # the kept run is not run again; the interrupted one is, once
    assert sorted(job.run_id for job in runtime.jobs) == sorted(
        r.run_id for r in run.plan.runs if r.run_id != first.run_id)
    (said,) = [e.message for e in seen
               if isinstance(e, events.RunRecovered) and e.run_id == second.run_id]
    aside = Path((said or "").split("its partial files are in ")[-1])
    aside = aside if aside.is_absolute() else run.dir / aside
    assert aside.is_dir() and (aside / "error.json").exists()  # set aside, with its reason


def test_a_second_ctrl_c_kills_every_run_in_flight(tmp_path, four_cpus) -> None:
    run, runtime, seen = make(tmp_path, hold_s=60, max_parallel=2)
    graceful: list[str] = []
    killed: list[str] = []

    def stop() -> None:  # a graceful stop that does not end the runs (agents stuck)
        with runtime.lock:
            runtime.stopping = True
            graceful.extend(runtime.in_flight)

    def kill() -> None:
        with runtime.lock:
            killed.extend(runtime.in_flight)
        runtime.halt.set()

    runtime.stop, runtime.kill = stop, kill  # type: ignore[method-assign]

    def interrupt_twice() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(runtime.in_flight) < 2:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)
        while time.monotonic() < deadline and len(graceful) < 2:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice, daemon=True).start()
    with pytest.raises(Interrupted):
        run.execute()
    assert len(graceful) == 2 and sorted(killed) == sorted(graceful)
    assert [e.force for e in seen if isinstance(e, events.SignalReceived)] == [False, True]
    manifest = mio.load(run.dir)
    assert sorted(r.status for r in manifest.runs) == ["interrupted", "interrupted", "pending",
                                                       "pending"]


def test_an_engine_that_stays_away_stops_the_study_with_two_runs_in_flight(tmp_path,
                                                                            four_cpus) -> None:
    from test_engine_loss import Client, Engine

    from harness.controller.runtimes.docker import DockerRuntime

    engine = Engine()
    model = tmp_path / "model"
    model.mkdir()
    study = Study(name="gone", experiment={"model": str(model), "device": "cpu"},
                  sweep={"batch_size": [1, 2, 3, 4]},
                  execution={"engine_wait_s": 10, "order": "sequential", "max_parallel": 2})
    plan = expand(study)
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "study.yaml").write_text("name: gone\n")
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path / "cache")
    run = StudyRun(study, plan, study_dir, runtime, mio.new_manifest(plan, study_dir / "study.yaml"),
                   sleep=engine.sleep)
    final = run.execute()
    assert final.state == "aborted" and "engine_wait_s" in (final.message or "")
    started = [r for r in final.runs if r.attempts]
    assert 1 <= len(started) <= 2  # no run started once the engine was gone
    assert all(r.status == "failed" and r.reason == "engine_unavailable" for r in started)
    assert not any(r.status == "running" for r in final.runs)
    assert mio.load(run.dir).model_dump() == final.model_dump()
