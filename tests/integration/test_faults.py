"""Faults thrown at running studies in real containers.

Each test runs a small study of the tiny model, injects one fault by a real mechanism while
the study runs, and checks that finished runs are intact, the manifest is valid, the failing
run's reason is named (with its container log and error.json kept), no container is left
behind, and that a resume then completes the study without re-running any finished run
(attempt counts and result.json modification times unchanged).

Mechanisms: ``docker kill`` from the test thread; a model folder whose config.json is broken
(the agent raises); a memory limit too small for one experiment's attention matrices; a
prompts file replaced, once the study has started (its checks passed), by a named pipe nobody
writes to (a real hang in I/O); ``docker image rm`` of the study's image tag between two runs;
a model folder removed once the study has started; SIGINT/SIGTERM
and SIGKILL sent to a ``harness study run`` process; a tmpfs filled up while a run writes into
it; a bind mount remounted read-only between runs. Two faults need an agent that misbehaves on
purpose and are simulated with an image derived from the real one (its entrypoint wraps the
real agent): an agent that leaves a truncated result.json and exits 0, and one that prints
its environment (where the HF_TOKEN it was given must not survive in anything kept).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from harness.config.load import plan_study
from harness.controller.lifecycle import resume_study, start_study
from harness.errors import StorageProblem, UserInputError
from harness.results.events import Event, OrphanFound, RunRecovered, ignore
from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest, RunError

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.docker

STUDY = """\
name: {name}
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: {batch}
  workload: {{num_prompts: {prompts}, input_tokens: {tokens}, output_tokens: 2, seed: 1}}
  measurement: {{warmup_batches: 0, baseline_s: 0, min_window_s: 0.2, prefill_split: false}}
  pytorch: {{attn_implementation: eager}}
sweep:
  {axis}: [{values}]
execution:
  cycles: 1
  order: sequential
  runner: docker
  timeout_s: {timeout}
  gap_s: {gap}
  max_consecutive_failures: {mcf}
{extra}{top}{images}output_dir: {out}
"""


STARTED: list[str] = []  # study names of the current test, for the clean-up below


@pytest.fixture(autouse=True)
def _remove_leftovers(docker_client) -> Iterator[None]:
    """After a test (whose own checks ran first), remove any container it left behind."""
    STARTED.clear()
    yield
    for name in STARTED:
        for c in docker_client.containers.list(all=True, ignore_removed=True,
                                               filters={"label": f"org.harness.study={name}"}):
            c.remove(force=True)


class Study:
    """A fault-test study: its file, name, run ids in plan order and output folder."""

    def __init__(self, tmp_path: Path, scenario: str, model: Path, axis: str, values: list[Any],
                 *, timeout: float = 120, gap: float = 0, mcf: int = 5, extra: str = "",
                 top: str = "", image: str | None = None, batch: int = 1, prompts: int = 1, tokens: int = 8,
                 out: Path | None = None) -> None:
        self.name = f"faults-{scenario}-{uuid.uuid4().hex[:6]}"
        STARTED.append(self.name)
        self.out = out or tmp_path / "results"
        self.file = tmp_path / f"{scenario}.yaml"
        self.fields = dict(
            name=self.name, model=model, axis=axis, values=", ".join(str(v) for v in values),
            timeout=timeout, gap=gap, mcf=mcf, extra=extra, top=top, batch=batch, prompts=prompts,
            tokens=tokens, images=f"images: {{pytorch: {image}}}\n" if image else "", out=self.out,
        )
        self.write()
        self.run_ids = [r.run_id for r in plan_study(self.file)[1].runs]

    def write(self, **changes: Any) -> None:
        self.fields.update(changes)
        self.file.write_text(STUDY.format(**self.fields), encoding="utf-8")

    @property
    def dir(self) -> Path:
        (study_dir,) = [p for p in self.out.iterdir() if p.name.startswith(self.name)]
        return study_dir

    def manifest(self) -> Manifest:
        return read_model(self.dir / "manifest.json", Manifest)

    def status(self, run_id: str) -> str | None:
        try:
            return self.manifest().record(run_id).status
        except (FileNotFoundError, ValueError, KeyError):
            return None


# -- helpers -----------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (FileNotFoundError, ValueError, docker.errors.NotFound):
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def containers(client, study: Study, **filters: str) -> list[Any]:
    labels = [f"org.harness.study={study.name}"] + [f"org.harness.{k}={v}" for k, v in filters.items()]
    return client.containers.list(all=True, filters={"label": labels}, ignore_removed=True)


def running_container(client, study: Study, run_id: str) -> Any:
    found = [c for c in containers(client, study, run=run_id) if c.status == "running"]
    return found[0] if found else None


class Injector(threading.Thread):
    """Runs the fault injection beside the study; its failure fails the test."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.action = action
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.action()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            self.error = e

    def check(self) -> None:
        self.join(timeout=120)
        if self.error is not None:
            raise self.error


def model_copy(tiny_model: Path, where: Path) -> Path:
    shutil.copytree(tiny_model, where)
    return where


PROMPT_LINE = '{"prompt": "the quick brown fox jumps"}\n'


def prompts_file(tmp_path: Path) -> Path:
    """A prompts file beside the study: regular when the study starts, so its checks pass."""
    path = tmp_path / "prompts.jsonl"
    path.write_text(PROMPT_LINE)
    return path


def hang(prompts: Path) -> None:
    """Make the prompts file a named pipe nobody writes: an agent that reads it hangs."""
    prompts.unlink()
    os.mkfifo(prompts)


def fix_prompts(prompts: Path) -> None:
    """The prompts file as it was when the study started (the hash it recorded)."""
    prompts.unlink()
    prompts.write_text(PROMPT_LINE)


def hang_once_running(study: Study, prompts: Path) -> None:
    """Once run 1 runs (the start's checks passed), make the prompts of a later run hang."""
    wait_for(lambda: study.status(study.run_ids[0]) in ("running", "done"), "run 1 to start")
    hang(prompts)


def done_snapshot(study: Study) -> dict[str, tuple[int, int]]:
    """Attempts and result.json mtime of every done run."""
    snap = {}
    for rec in study.manifest().runs:
        if rec.status == "done":
            snap[rec.run_id] = (rec.attempts, (study.dir / "runs" / rec.run_id / "result.json")
                                .stat().st_mtime_ns)
    return snap


def check_fault(client, study: Study, run_id: str, reason: str, *, status: str = "failed",
                done: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """After the fault: the manifest is valid, the failing run named, the rest intact."""
    manifest = study.manifest()
    rec = manifest.record(run_id)
    assert (rec.status, rec.reason) == (status, reason), (rec.status, rec.reason, rec.message)
    assert rec.message
    if status == "interrupted":
        folder = study.dir / "runs" / ".attempts" / f"{run_id}-attempt{rec.attempts}"
        assert not (study.dir / "runs" / run_id).exists()
    else:
        folder = study.dir / "runs" / run_id
    assert (folder / "container.log").is_file(), f"no container.log in {folder}"
    assert read_model(folder / "error.json", RunError).reason == reason
    assert not (folder / "result.json").exists()
    for other in manifest.runs:
        if other.status == "done":
            result = read_model(study.dir / "runs" / other.run_id / "result.json", ExperimentResult)
            assert result.run.run_id == other.run_id
    if done is not None:
        assert [r.run_id for r in manifest.runs if r.status == "done"] == done
    assert containers(client, study) == [], "a container was left behind"
    return done_snapshot(study)


def check_complete(client, study: Study, before: dict[str, tuple[int, int]]) -> Manifest:
    """After the resume: every run done exactly once; finished runs were not run again."""
    manifest = study.manifest()
    assert manifest.state == "complete", manifest.message
    assert [r.run_id for r in manifest.runs] == study.run_ids
    for rec in manifest.runs:
        assert rec.status == "done", (rec.run_id, rec.reason, rec.message)
        result = read_model(study.dir / "runs" / rec.run_id / "result.json", ExperimentResult)
        assert result.run.run_id == rec.run_id
    now = done_snapshot(study)
    for run_id, (attempts, mtime) in before.items():
        assert now[run_id] == (attempts, mtime), f"{run_id} was run again"
    on_disk = {p.name for p in (study.dir / "runs").iterdir()}
    assert on_disk - {".attempts"} == set(study.run_ids), "a run folder is duplicated or missing"
    assert containers(client, study) == [], "a container was left behind"
    assert not (study.dir / ".reserve").exists()
    return manifest


def run_in_process(study: Study, inject: Callable[[], None] | None = None,
                   expect: type[BaseException] | None = None) -> Any:
    prepared = start_study(study.file)
    injector = Injector(inject) if inject else None
    if injector:
        injector.start()
    try:
        if expect is None:
            return prepared.run.execute()
        with pytest.raises(expect) as e:
            prepared.run.execute()
        return e.value
    finally:
        if injector:
            injector.check()


def resume_in_process(study: Study, events: list[Event] | None = None,
                      **kwargs: Any) -> Manifest:
    observer = events.append if events is not None else ignore
    return resume_study(study.dir, observer=observer, **kwargs).run.execute()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=300, env={**os.environ, "COLUMNS": "200"},
    )


def start_cli(study: Study, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "controller.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "study", "run", str(study.file)],
            stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200"},
        )
    return proc, log


# -- crash isolation ---------------------------------------------------------------------------


def test_container_killed_with_sigkill(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    study = Study(tmp_path, "killed", tiny_model, "batch_size", [1, 2, 3])
    first, victim, last = study.run_ids

    def kill() -> None:
        wait_for(lambda: running_container(docker_client, study, victim), "run 2's container")
        running_container(docker_client, study, victim).kill()  # SIGKILL, as docker kill does

    final = run_in_process(study, kill)
    assert final.state == "incomplete"
    before = check_fault(docker_client, study, victim, "killed", done=[first, last])
    assert "SIGKILL" in study.manifest().record(victim).message
    resume_in_process(study)
    check_complete(docker_client, study, before)
    assert study.manifest().record(victim).attempts == 2
    assert (study.dir / "runs" / ".attempts" / f"{victim}-attempt1" / "error.json").is_file()


def test_agent_exception(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    broken = model_copy(tiny_model, tmp_path / "broken")
    good_config = (broken / "config.json").read_text()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    study = Study(tmp_path, "exception", tiny_model, "model", [tiny_model, broken,
                                                              model_copy(tiny_model, tmp_path / "m3")])
    first, victim, last = study.run_ids
    run_in_process(study)
    before = check_fault(docker_client, study, victim, "agent_exception", done=[first, last])
    err = read_model(study.dir / "runs" / victim / "error.json", RunError)
    assert err.where == "agent" and "no-such-architecture" in (err.traceback or "") + err.message
    (broken / "config.json").write_text(good_config)
    resume_in_process(study)
    check_complete(docker_client, study, before)


def test_out_of_memory(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    # eager attention over 2000 tokens x 8 prompts needs far more than 1 GiB; 16 tokens do not
    study = Study(tmp_path, "oom", tiny_model, "workload.input_tokens", [16, 2000, 24], batch=8,
                  prompts=8, extra="  mem_limit: 1g\n")
    first, victim, last = study.run_ids
    run_in_process(study)
    before = check_fault(docker_client, study, victim, "out_of_memory", done=[first, last])
    study.write(extra="  mem_limit: 6g\n")  # the fix: more memory, which changes the study
    with pytest.raises(UserInputError, match="refusing to resume") as refused:
        resume_study(study.dir, file=study.file)
    assert "-  mem_limit: 1g" in str(refused.value) and "+  mem_limit: 6g" in str(refused.value)
    assert "execution.mem_limit: '1g' -> '6g'" in str(refused.value)
    resume_study(study.dir, file=study.file, force=True).run.execute()
    check_complete(docker_client, study, before)
    assert "1g" in (study.dir / "study.previous-1.yaml").read_text()
    assert "6g" in (study.dir / "study.yaml").read_text()


def test_hang_past_timeout(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    prompts = prompts_file(tmp_path)
    study = Study(tmp_path, "timeout", tiny_model, "workload.dataset",
                  ["synthetic", prompts], timeout=15, top="include: [{batch_size: 2}]\n")
    first, victim, last = study.run_ids
    run_in_process(study, lambda: hang(prompts))
    before = check_fault(docker_client, study, victim, "timeout", done=[first, last])
    err = read_model(study.dir / "runs" / victim / "error.json", RunError)
    assert err.where == "controller" and "timeout_s" in err.message
    assert "read_file" in (err.traceback or ""), "the agent's traceback shows where it hung"
    fix_prompts(prompts)
    resume_in_process(study)
    check_complete(docker_client, study, before)


def test_missing_image(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    tag = f"harness-test/faults:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(pytorch_cpu_image).tag(tag)
    study = Study(tmp_path, "image", tiny_model, "batch_size", [1, 2, 3], gap=2, image=tag)
    first, victim, last = study.run_ids

    def remove_then_restore() -> None:
        wait_for(lambda: study.status(first) == "done", "run 1 done")
        docker_client.images.remove(tag)  # untags only: harness/pytorch:cpu keeps the image
        wait_for(lambda: study.status(victim) == "failed", "run 2 failed")
        docker_client.images.get(pytorch_cpu_image).tag(tag)

    try:
        run_in_process(study, remove_then_restore)
        before = check_fault(docker_client, study, victim, "image_missing", done=[first, last])
        assert tag in study.manifest().record(victim).message
        resume_in_process(study)
        check_complete(docker_client, study, before)
    finally:
        try:
            docker_client.images.remove(tag)
        except Exception:  # noqa: BLE001
            pass


def test_model_not_found(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    missing = model_copy(tiny_model, tmp_path / "not-downloaded-yet")  # there at the start
    study = Study(tmp_path, "nomodel", tiny_model, "model",
                  [tiny_model, missing, model_copy(tiny_model, tmp_path / "m3")], gap=2)
    first, victim, last = study.run_ids

    def take_away() -> None:
        wait_for(lambda: study.status(first) == "done", "run 1 done")
        shutil.rmtree(missing)

    run_in_process(study, take_away)
    before = check_fault(docker_client, study, victim, "model_not_found", done=[first, last])
    rec = study.manifest().record(victim)
    assert str(missing) in rec.message and rec.container_id is None  # no container started
    missing.symlink_to(tiny_model)
    resume_in_process(study)
    check_complete(docker_client, study, before)


def test_max_consecutive_failures_stops_the_study(tmp_path, docker_client, pytorch_cpu_image,
                                                  tiny_model):
    gone = [model_copy(tiny_model, tmp_path / "gone-1"), model_copy(tiny_model, tmp_path / "gone-2")]
    study = Study(tmp_path, "mcf", tiny_model, "model",
                  [tiny_model, *gone, model_copy(tiny_model, tmp_path / "m4")], mcf=2, gap=2)
    first, bad1, bad2, never = study.run_ids

    def take_away() -> None:  # once the study has started (its checks passed)
        wait_for(lambda: study.status(first) == "done", "run 1 done")
        for path in gone:
            shutil.rmtree(path)

    injector = Injector(take_away)
    injector.start()
    proc = cli("study", "run", str(study.file), cwd=tmp_path)
    injector.check()
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert ("stopped after 2 consecutive failed runs (execution.max_consecutive_failures); "
            "last reason: model_not_found") in proc.stderr
    manifest = study.manifest()
    assert manifest.state == "aborted" and "max_consecutive_failures" in manifest.message
    assert manifest.record(never).status == "pending"
    before = check_fault(docker_client, study, bad2, "model_not_found", done=[first])
    for path in gone:
        path.symlink_to(tiny_model)
    prepared = resume_study(study.dir)
    assert "resuming: 1 runs done and kept, 3 to run" in prepared.notes
    prepared.run.execute()
    check_complete(docker_client, study, before)


# -- Ctrl+C, SIGTERM and a lost controller -----------------------------------------------------


@pytest.mark.parametrize(("signum", "times"), [(signal.SIGINT, 1), (signal.SIGTERM, 1),
                                               (signal.SIGINT, 2)],
                         ids=["sigint", "sigterm", "sigint-twice-forces"])
def test_interrupted_by_signal(tmp_path, docker_client, pytorch_cpu_image, tiny_model, signum,
                               times):
    prompts = prompts_file(tmp_path)
    study = Study(tmp_path, "signal", tiny_model, "workload.dataset", ["synthetic", prompts])
    first, victim = study.run_ids
    proc, log = start_cli(study, tmp_path)
    try:
        hang_once_running(study, prompts)
        container = wait_for(lambda: running_container(docker_client, study, victim),
                             "run 2's container")
        wait_for(lambda: b"[agent] run" in container.logs(), "the agent to start")
        time.sleep(1)
        started = time.monotonic()
        for _ in range(times):
            proc.send_signal(signum)
            time.sleep(0.3)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    output = log.read_text()
    assert code == 130, output
    assert time.monotonic() - started < (8 if times == 2 else 15), "the stop was not prompt"
    assert f"{signal.Signals(signum).name}: stopping the run in flight gracefully" in output
    manifest = study.manifest()
    assert manifest.state == "interrupted" and "harness study resume" in manifest.message
    before = check_fault(docker_client, study, victim, "interrupted", status="interrupted",
                         done=[first])
    aside = study.dir / "runs" / ".attempts" / f"{victim}-attempt1"
    agent = read_model(aside / "error.json", RunError)
    if times == 1:  # graceful: the agent itself said it was interrupted, with its traceback
        assert agent.where == "agent" and "StoppedBySignal" in (agent.traceback or "")
        assert agent.message == "stopped by signal SIGTERM"
    with pytest.raises(Exception):  # noqa: B017 - the container is gone
        container.reload()
    fix_prompts(prompts)
    if (signum, times) == (signal.SIGINT, 1):  # once through the command line
        again = cli("study", "resume", str(study.dir), cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
    else:
        resume_in_process(study)
    check_complete(docker_client, study, before)


def test_controller_killed_mid_run(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    prompts = prompts_file(tmp_path)
    study = Study(tmp_path, "lost", tiny_model, "workload.dataset", ["synthetic", prompts])
    first, victim = study.run_ids
    proc, _ = start_cli(study, tmp_path)
    try:
        hang_once_running(study, prompts)
        wait_for(lambda: running_container(docker_client, study, victim), "run 2's container")
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
        proc.wait()
    time.sleep(1)
    assert running_container(docker_client, study, victim), "the stray should still run"
    assert study.manifest().record(victim).status == "running"
    status = cli("study", "status", str(study.dir), cwd=tmp_path)
    assert "no controller is running it" in status.stdout, status.stdout
    before = done_snapshot(study)
    fix_prompts(prompts)  # the stray still hangs on the old pipe
    events: list[Event] = []
    resume_in_process(study, events)
    assert victim in [e.run_id for e in events if isinstance(e, OrphanFound)]
    assert (victim, "interrupted") in [
        (e.run_id, e.status) for e in events if isinstance(e, RunRecovered)]
    aside = study.dir / "runs" / ".attempts" / f"{victim}-attempt1"
    assert read_model(aside / "error.json", RunError).reason == "controller_lost"
    assert "[agent] run" in (aside / "container.log").read_text()  # the stray's log was kept
    manifest = check_complete(docker_client, study, before)
    assert manifest.record(victim).attempts == 2


def test_controller_killed_after_the_result_was_written(tmp_path, docker_client,
                                                        pytorch_cpu_image, tiny_model):
    study = Study(tmp_path, "lostdone", tiny_model, "batch_size", [1, 2])
    first, victim = study.run_ids
    proc, _ = start_cli(study, tmp_path)
    try:
        container = wait_for(lambda: running_container(docker_client, study, victim),
                             "run 2's container")
    finally:
        proc.kill()
        proc.wait()
    assert container.wait(timeout=120)["StatusCode"] == 0  # the stray finishes on its own
    result = study.dir / "runs" / victim / "result.json"
    written = result.stat().st_mtime_ns
    assert study.manifest().record(victim).status == "running"
    before = done_snapshot(study)
    events: list[Event] = []
    resume_in_process(study, events)
    assert (victim, "done") in [
        (e.run_id, e.status) for e in events if isinstance(e, RunRecovered)]
    manifest = check_complete(docker_client, study, before)
    rec = manifest.record(victim)
    assert rec.attempts == 1 and result.stat().st_mtime_ns == written, "the finished run re-ran"
    assert "completely written" in rec.message and rec.exit_code == 0
    assert (study.dir / "runs" / victim / "container.log").is_file()


# -- a Docker engine that goes away --------------------------------------------------------------

DOCKER_PID = Path("/var/run/docker.pid")


def wait_for_an_idle_engine(client, timeout_s: float = 600) -> None:
    """The engine is shared: never restart it while anything else runs a container on it."""
    deadline = time.monotonic() + timeout_s
    while True:
        others = [c.name for c in client.containers.list()]
        if not others:
            return
        if time.monotonic() > deadline:
            pytest.skip(f"other containers keep running on this engine ({', '.join(others)}); "
                        "restarting it would break them")
        time.sleep(5)


def ensure_engine() -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")],
                          capture_output=True, text=True, timeout=180)


def test_docker_engine_restarted_mid_run(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    if os.getuid() != 0 or not DOCKER_PID.is_file():
        pytest.skip("restarting the Docker engine needs root and its pid file /var/run/docker.pid")
    prompts = prompts_file(tmp_path)
    study = Study(tmp_path, "engine", tiny_model, "workload.dataset",
                  ["synthetic", prompts], top="include: [{batch_size: 2}]\n",
                  extra="  engine_wait_s: 240\n")
    first, victim, last = study.run_ids
    restarted: list[subprocess.CompletedProcess[str]] = []

    def restart_engine() -> None:
        hang(prompts)
        container = wait_for(lambda: running_container(docker_client, study, victim),
                             "run 2's container")
        wait_for(lambda: b"[agent] run" in container.logs(), "the agent to start")
        pid = int(DOCKER_PID.read_text().strip())
        os.kill(pid, signal.SIGTERM)  # the engine stops its containers and exits
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), "dockerd to exit", timeout=90)
        time.sleep(3)  # the controller finds no engine for a while
        restarted.append(ensure_engine())

    wait_for_an_idle_engine(docker_client)
    try:
        final = run_in_process(study, restart_engine)
    finally:
        if not restarted or restarted[0].returncode != 0:
            ensure_engine()  # never leave the shared engine down
    assert restarted[0].returncode == 0, restarted[0].stdout + restarted[0].stderr
    assert final.state == "incomplete", final.message  # it waited and went on
    before = check_fault(docker_client, study, victim, "engine_unavailable", done=[first, last])
    rec = study.manifest().record(victim)
    assert "stopped answering" in rec.message and "exited with code" in rec.message
    assert "[agent] run" in (study.dir / "runs" / victim / "container.log").read_text()
    fix_prompts(prompts)
    resume_in_process(study)
    check_complete(docker_client, study, before)


# -- storage -----------------------------------------------------------------------------------


@contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here (needs root): {proc.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` until writes fail with ENOSPC."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 4096):
            try:
                while True:
                    os.write(fd, bytes(size))
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_disk_full_during_a_run(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    with mounted("-t", "tmpfs", "-o", "size=24m", "tmpfs", target=tmp_path / "disk") as disk:
        study = Study(tmp_path, "full", tiny_model, "batch_size", [1, 2], out=disk)
        first, victim = study.run_ids
        filler: list[Path] = []

        def fill_during_run_2() -> None:
            wait_for(lambda: running_container(docker_client, study, victim), "run 2's container")
            filler.append(fill(disk))

        error = run_in_process(study, fill_during_run_2, expect=StorageProblem)
        assert "No space left on device" in str(error)
        assert "harness study resume" in str(error)
        manifest = study.manifest()
        assert manifest.state == "aborted" and "cannot be written" in manifest.message
        rec = manifest.record(victim)
        assert (rec.status, rec.reason) == ("interrupted", "storage_error"), rec
        assert not (study.dir / "runs" / victim / "result.json").exists()
        assert [r.run_id for r in manifest.runs if r.status == "done"] == [first]
        assert containers(docker_client, study) == []
        before = done_snapshot(study)
        filler[0].unlink()
        resume_in_process(study)
        check_complete(docker_client, study, before)


def test_output_folder_turns_read_only(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    # a file where the output folder must be: refused before anything starts
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    study0 = Study(tmp_path, "blocked", tiny_model, "batch_size", [1], out=blocked)
    with pytest.raises(StorageProblem, match="is a file, not a folder"):
        start_study(study0.file)
    assert containers(docker_client, study0) == []

    target = tmp_path / "rw"
    target.mkdir()
    with mounted("--bind", str(target), target=target) as folder:
        study = Study(tmp_path, "readonly", tiny_model, "batch_size", [1, 2], gap=3, out=folder)
        first, victim = study.run_ids

        def remount_read_only() -> None:
            wait_for(lambda: study.status(first) == "done", "run 1 done")
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)

        error = run_in_process(study, remount_read_only, expect=StorageProblem)
        assert "Read-only file system" in str(error) and "harness study resume" in str(error)
        manifest = study.manifest()  # the last one written, intact
        assert manifest.record(first).status == "done"
        assert manifest.record(victim).status == "pending" and manifest.record(victim).attempts == 0
        assert containers(docker_client, study) == []
        before = done_snapshot(study)
        subprocess.run(["mount", "-o", "remount,rw,bind", str(folder)], check=True)
        resume_in_process(study)
        check_complete(docker_client, study, before)


FAULTY_ENTRYPOINT = """\
#!/bin/sh
# A misbehaving agent for tests: the real agent, plus what the run's model path asks for.
if grep -q print-env /results/config.json; then env; fi
python -m harness.agent "$@"
code=$?
if [ "$code" -eq 0 ] && grep -q truncate-result /results/config.json; then
    head -c 300 /results/result.json > /results/.cut && mv /results/.cut /results/result.json
fi
exit $code
"""


@pytest.fixture(scope="module")
def faulty_agent_image(docker_client, pytorch_cpu_image, tmp_path_factory) -> Iterator[str]:
    """An image derived from the real one whose entrypoint wraps the real agent (see above)."""
    context = tmp_path_factory.mktemp("faulty-agent")
    (context / "entry.sh").write_text(FAULTY_ENTRYPOINT)
    (context / "Dockerfile").write_text(
        f"FROM {pytorch_cpu_image}\nCOPY entry.sh /entry.sh\n"
        'ENTRYPOINT ["/bin/sh", "/entry.sh"]\n')
    tag = f"harness-test/faulty-agent:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(path=str(context), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_truncated_result_is_failed_not_done(tmp_path, docker_client, tiny_model,
                                             pytorch_cpu_image, faulty_agent_image):
    tag = f"harness-test/faults:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(faulty_agent_image).tag(tag)
    cut = tmp_path / "truncate-result"
    cut.symlink_to(tiny_model)
    study = Study(tmp_path, "truncated", tiny_model, "model", [tiny_model, cut], image=tag)
    first, victim = study.run_ids
    try:
        run_in_process(study)
        manifest = study.manifest()
        rec = manifest.record(victim)
        assert (rec.status, rec.reason, rec.exit_code) == ("failed", "result_invalid", 0)
        assert "does not validate as ExperimentResult" in rec.message
        half = study.dir / "runs" / victim / "result.json"
        assert half.stat().st_size == 300  # kept for inspection, never counted as done
        assert read_model(study.dir / "runs" / victim / "error.json", RunError).reason == \
            "result_invalid"
        assert [r.run_id for r in manifest.runs if r.status == "done"] == [first]
        assert containers(docker_client, study) == []
        before = done_snapshot(study)
        docker_client.images.get(pytorch_cpu_image).tag(tag)  # a fixed agent under the same tag
        resume_in_process(study)
        check_complete(docker_client, study, before)
        assert (study.dir / "runs" / ".attempts" / f"{victim}-attempt1" / "result.json").stat() \
            .st_size == 300
    finally:
        docker_client.images.remove(tag, force=True)


# -- hardened containers and secrets -----------------------------------------------------------


def test_secret_reaches_the_agent_only_through_its_environment(
        tmp_path, docker_client, tiny_model, faulty_agent_image, monkeypatch):
    token = "hf_" + uuid.uuid4().hex + uuid.uuid4().hex[:6]
    monkeypatch.setenv("HF_TOKEN", token)
    chatty = tmp_path / "print-env"
    chatty.symlink_to(tiny_model)
    study = Study(tmp_path, "secret", tiny_model, "model", [chatty], image=faulty_agent_image)
    (run_id,) = study.run_ids
    seen: list[str] = []

    def look_inside() -> None:
        container = wait_for(lambda: running_container(docker_client, study, run_id), "container")
        seen.extend(container.attrs["Config"]["Env"])

    final = run_in_process(study, look_inside)
    assert final.state == "complete"
    assert f"HF_TOKEN={token}" in seen, "the token is handed over in the environment"
    log = (study.dir / "runs" / run_id / "container.log").read_text()
    assert "HF_TOKEN=***REDACTED***" in log  # the agent printed it; the controller scrubbed it
    for path in study.dir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), f"the token leaked into {path}"


def test_containers_are_hardened(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    from harness.controller.runtimes.base import RunJob
    from harness.controller.runtimes.docker import DockerRuntime
    from harness.controller.runtimes.hardening import container_problems

    hf_home = tmp_path / "hf"
    (hf_home / "hub").mkdir(parents=True)
    (hf_home / "token").write_text("hf_" + "x" * 34)
    run_dir = tmp_path / "study" / "runs" / "r-c1"
    run_dir.mkdir(parents=True)
    runtime = DockerRuntime(client=docker_client)
    name = f"faults-hardened-{uuid.uuid4().hex[:6]}"
    job = RunJob(run_id="r-c1", study=name, run_dir=run_dir, image=pytorch_cpu_image,
                 model_host_path=tiny_model, model_ref=str(tiny_model), hf_cache=hf_home,
                 gpus=[], device="cpu", timeout_s=10, mem_limit="512m",
                 env={"HF_TOKEN": "hf_" + "y" * 34})
    container = runtime._create(job)
    try:
        attrs = container.attrs
        host = attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"] and host["PidsLimit"] > 0
        assert not host["Privileged"] and host["Memory"] == 512 * 1024 * 1024
        user = attrs["Config"]["User"]
        assert user.split(":")[0] not in ("", "0", "root")
        mounts = {m["Destination"]: m for m in attrs["Mounts"]}
        assert set(mounts) == {"/results", "/model", "/hf-cache/hub"}  # not the token file
        assert mounts["/results"]["RW"] and not mounts["/model"]["RW"]
        assert not mounts["/hf-cache/hub"]["RW"]
        assert not any("docker.sock" in m["Source"] for m in attrs["Mounts"])
        assert "HF_TOKEN=hf_" + "y" * 34 in attrs["Config"]["Env"]
        assert container_problems(attrs, {"/results"}) == []
    finally:
        container.remove(force=True)
    # a model folder that holds the Docker socket is refused before any container exists
    sockets = [Path(s) for s in ("/var/run/docker.sock", "/run/docker.sock") if Path(s).exists()]
    if sockets:
        bad = RunJob(**{**job.__dict__, "model_host_path": sockets[0].parent})
        outcome = runtime.run(bad)
        assert outcome.reason == "unsafe_container" and "Docker socket" in outcome.error
        assert docker_client.containers.list(all=True,
                                             filters={"label": f"org.harness.study={name}"}) == []
