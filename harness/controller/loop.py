"""The run loop: runs started in plan order, with gaps, timeouts and a manifest.

One run after another by default; with execution.max_parallel N, up to N at once, each on its
own GPUs from the pool (on the CPU, its own CPU set; controller/placement.py), and each result
says which runs overlapped its measured window.

It survives faults: each run's failure is recorded with a named reason and the study goes on;
Ctrl+C or SIGTERM stops the runs in flight gracefully (a second one forces); a study whose
controller was lost is recovered at the next start; a container engine that goes away is
waited for (execution.engine_wait_s) and the study goes on or stops cleanly; an output folder
that cannot be written stops the study with the manifest consistent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from harness.config.study import Study
from harness.config.sweep import Plan, PlannedRun
from harness.controller.gpucontrol import ManifestJournal
from harness.controller.inflight import Ended, InFlight, Slot
from harness.controller.launch import Launcher, record_attempt
from harness.controller.outcome import mark_done, read_result
from harness.controller.overlap import overlapping
from harness.controller.placement import (
    GpuPool,
    Placement,
    assign_gpus,
    cpu_sets,
    gpu_affinity,
    pins_cpu_slots,
    slots_for,
)
from harness.controller.recovery import Recovery
from harness.controller.rundirs import fresh_run_dir, set_aside
from harness.controller.runtimes.base import Runtime
from harness.controller.signals import SignalWatch
from harness.devices.affinity import host_cpus
from harness.devices.library import study_library
from harness.errors import Interrupted, StorageProblem
from harness.results import events
from harness.results import manifest as manifest_io
from harness.results.reasons import FailureReason
from harness.results.schema import Manifest, RunInfo, RunRecord

#: space held while a study runs and freed to write the final manifest on a full disk
RESERVE = ".reserve"
RESERVE_MIN_BYTES = 256 * 1024


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


class StudyRun:
    """Executes a plan with one runtime and keeps the manifest current."""

    def __init__(
        self,
        study: Study,
        plan: Plan,
        study_dir: Path,
        runtime: Runtime,
        manifest: Manifest,
        *,
        observer: events.Observer = events.ignore,
        sleep: Callable[[float], None] | None = None,
        keep_failed: bool = False,
        base_dir: Path | None = None,
        models: Mapping[str, Path] | None = None,
    ) -> None:
        self.study = study
        self.plan = plan
        self.dir = study_dir
        self.runtime = runtime
        self.manifest = manifest
        self.observer = observer
        self._stop = threading.Event()
        self.sleep: Callable[[float], None] = sleep or self._pause
        self.keep_failed = keep_failed
        self.base_dir = base_dir
        self.signals = SignalWatch(runtime, observer, self._stop)
        self._manifest_lock = threading.RLock()  # runs end, and journal GPU changes, in threads
        self.launcher = Launcher(
            runtime, study=study.name, execution=study.execution, images=study.images,
            hf_cache=study.hf_cache, base_dir=base_dir, datasets=manifest.datasets,
            observer=observer,
            sleep=lambda seconds: self.sleep(seconds), stopping=lambda: self.stopping,
            models=models,
            gpu_library=study_library(study.execution, study_dir),
            gpu_journal=ManifestJournal(manifest, self.save, self._manifest_lock),
        )
        self.scrubber = self.launcher.scrubber
        self._aside: dict[str, Path] = {}  # runs interrupted by Ctrl+C: where their files went
        self._engine_gone = False
        self._consecutive = 0
        ex = study.execution
        #: runs at once: max_parallel, or fewer where the GPUs or CPUs do not go round
        self.slots = slots_for(ex, [p.experiment for p in plan.experiments])
        self.pool = GpuPool(ex.gpus)
        sets = cpu_sets(host_cpus(), self.slots)
        #: each slot's CPU set, for CPU runs when several run at once
        self.slot_cpus: list[tuple[int, ...] | None] = (
            list(sets) if self.slots > 1 and len(sets) == self.slots else [None] * self.slots)
        self._flight: InFlight | None = None

    # -- manifest ----------------------------------------------------------------------------

    def save(self) -> None:
        """Rewrite the manifest atomically (one writer at a time: runs end in several threads)."""
        with self._manifest_lock:
            manifest_io.save(self.manifest, self.dir)

    def pending(self) -> list[PlannedRun]:
        """Planned runs still to run, in plan order (failed ones too unless kept)."""
        keep = {"done", "failed"} if self.keep_failed else {"done"}
        status = {r.run_id: r.status for r in self.manifest.runs}
        return [r for r in self.plan.runs if status.get(r.run_id) not in keep]

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when Ctrl+C or SIGTERM asks the study to stop."""
        self._stop.wait(seconds)

    @property
    def stopping(self) -> bool:
        """Whether Ctrl+C or SIGTERM asked the study to stop."""
        return self._stop.is_set()

    # -- the loop ----------------------------------------------------------------------------

    def execute(self) -> Manifest:
        """Run every pending run; return the final manifest.

        Raises Interrupted after Ctrl+C/SIGTERM and StorageProblem when the output folder
        cannot be written; the manifest says so in both cases.
        """
        with manifest_io.StudyLock(self.dir), self.signals.installed():
            self._hold_reserve()
            try:
                self.recover()
                return self._loop()
            finally:
                self._free_reserve()

    def recover(self) -> None:
        """Reconcile the manifest with what a lost controller left: containers and files."""
        Recovery(self.study.name, self.dir, self.manifest, self.runtime, self.observer,
                 self.scrubber, gpu_library=self.launcher.gpu_library).recover()
        self._save_or_stop()

    def _hold_reserve(self) -> None:
        """Hold some disk space so that the manifest can still be written once the disk is full."""
        try:
            size = (self.dir / manifest_io.MANIFEST).stat().st_size
        except OSError:
            size = 0
        path = self.dir / RESERVE
        try:
            with path.open("wb") as fh:
                fh.write(bytes(max(RESERVE_MIN_BYTES, 2 * size)))
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as e:
            self._free_reserve()
            raise StorageProblem(
                f"cannot write to {self.dir} ({e.strerror or e}); nothing was started"
            ) from e

    def _free_reserve(self) -> None:
        try:
            (self.dir / RESERVE).unlink()
        except OSError:
            pass  # gone already, or a read-only folder: the next start replaces it

    def _loop(self) -> Manifest:
        """Start the pending runs in plan order, up to ``slots`` at once; settle each as it ends.

        With one slot each run runs in this thread, one after another. With more, each runs in
        its own thread on GPUs from the pool (or its slot's CPU set), and this thread starts
        the next as soon as a slot and the GPUs it needs are free.
        """
        self.manifest.state = "running"
        self.manifest.message = None
        self._save_or_stop()
        todo = self.pending()
        self.observer(events.StudyStarted(total=len(self.plan.runs), todo=len(todo)))
        flight = InFlight(self.slot_cpus)
        self._flight = flight
        stop: str | None = None
        for planned in todo:
            while stop is None and not flight.has_free():
                stop = self._settle(flight.next_done())
            if stop is not None or self.stopping:
                break
            slot = flight.take()
            if not self._gap(slot.previous, planned):
                flight.give_back(slot)
                break
            placement = self._place(planned, slot)
            if placement is None:  # asked to stop while waiting for GPUs
                flight.give_back(slot)
                break
            flight.start(slot, planned, partial(self._run_placed, planned, placement))
        while flight.busy():
            why = self._settle(flight.next_done())
            stop = stop or why
        self._flight = None
        if stop is not None:
            return self._abort(stop)
        return self._finish()

    def _settle(self, ended: Ended) -> str | None:
        """Take in a run that ended: re-raise what it raised; why the study must stop, if it must."""
        if ended.error is not None:
            self._drain_after(ended.error)
        record = ended.record
        assert record is not None
        if self.stopping:
            return None
        ex = self.study.execution
        if self._engine_gone:
            return (f"stopped: the container engine did not answer within "
                    f"execution.engine_wait_s ({ex.engine_wait_s:g} s); run {record.run_id} is "
                    f"marked {record.reason}")
        self._consecutive = self._consecutive + 1 if record.status == "failed" else 0
        if self._consecutive >= ex.max_consecutive_failures:
            return (f"stopped after {self._consecutive} consecutive failed runs "
                    f"(execution.max_consecutive_failures); last reason: {record.reason}")
        return None

    def _drain_after(self, error: BaseException) -> None:
        """A run raised (the output folder cannot be written): stop the others, then re-raise."""
        flight = self._flight
        if flight is not None and flight.busy():
            self.runtime.stop()
            while flight.busy():
                flight.next_done()
        raise error

    def _place(self, planned: PlannedRun, slot: Slot) -> Placement | None:
        """The GPUs (from the pool) and CPUs of a run; None when asked to stop while waiting."""
        ex = self.study.execution
        exp = self.plan.experiment(planned.experiment_id)
        if self.slots == 1:
            return Placement(gpus=tuple(assign_gpus(ex, exp)))
        gpus = self.pool.acquire(ex.gpus_per_run(exp), lambda: self.stopping)
        if gpus is None:
            return None
        if pins_cpu_slots(ex, exp):
            return Placement(gpus=tuple(gpus), cpus=slot.cpus)
        cpus, mems = gpu_affinity(gpus, self.launcher.gpu_library, exp.device)
        return Placement(gpus=tuple(gpus), cpus=cpus, mems=mems)

    def _run_placed(self, planned: PlannedRun, placement: Placement) -> RunRecord:
        """Run one run on its placement, and give its GPUs back to the pool however it ends."""
        try:
            return self.run_one(planned, placement)
        finally:
            if self.slots > 1:
                self.pool.release(placement.gpus)

    def _gap(self, previous: PlannedRun | None, planned: PlannedRun) -> bool:
        """Pause before a run on a slot (gap_s, or cycle_gap_s between cycles); False if asked to stop."""
        if self.stopping:
            return False
        if previous is None:
            return True
        ex = self.study.execution
        gap = ex.cycle_gap_s if planned.cycle != previous.cycle else ex.gap_s
        if gap > 0:
            self.observer(events.Pause(seconds=gap))
            self.sleep(gap)
        return not self.stopping

    def _abort(self, why: str) -> Manifest:
        """Stop the study before its plan is complete; the message says how to go on."""
        self.manifest.state = "aborted"
        self.manifest.message = (f"{why}. Finished runs are kept; "
                                 f"{manifest_io.next_step(self.manifest, self.dir)}")
        self._save_or_stop()
        self.observer(events.StudyAborted(message=self.manifest.message))
        return self.manifest

    def _finish(self) -> Manifest:
        left = self.pending()
        if self.stopping and left:
            self._interrupted(len(left))
        failed = [r for r in self.manifest.runs if r.status != "done"]
        self.manifest.state = "incomplete" if failed else "complete"
        self.manifest.message = (f"{len(failed)} runs not done; "
                                 f"{manifest_io.next_step(self.manifest, self.dir)}" if failed else None)
        self._save_or_stop()
        return self.manifest

    def _interrupted(self, left: int) -> None:
        done = sum(r.status == "done" for r in self.manifest.runs)
        aside = "; ".join(f"run {run_id} was stopped, its partial files are in {path}"
                          for run_id, path in self._aside.items())
        self.manifest.state = "interrupted"
        self.manifest.message = (
            f"interrupted by {self.signals.first or 'a signal'}: {done}/{len(self.manifest.runs)} "
            f"runs done, {left} to go" + (f"; {aside}" if aside else "")
            + f". {_sentence(manifest_io.next_step(self.manifest, self.dir))}"
        )
        self._save_or_stop()
        self.observer(events.StudyInterrupted(message=self.manifest.message))
        raise Interrupted(self.manifest.message)

    def _save_or_stop(self) -> None:
        try:
            self.save()
        except StorageProblem as e:
            self._storage_stop(None, e)

    def _storage_stop(self, run_id: str | None, error: Exception) -> None:
        """Stop the study: the output folder cannot be written. Keep the manifest consistent."""
        if run_id is not None:
            rec = self.manifest.record(run_id)
            result, _ = read_result(self.dir / "runs" / run_id)
            if rec.status == "running" and result is not None:
                mark_done(rec, result, manifest_io.now_iso())  # complete before the disk filled
            elif rec.status == "running":
                rec.status = "interrupted"
                rec.reason = FailureReason.STORAGE_ERROR
                rec.message = self.scrubber.text(str(error))
                rec.finished_at = manifest_io.now_iso()
        self.manifest.state = "aborted"
        self.manifest.message = (
            f"stopped: the output folder cannot be written ({error}). Finished runs are kept; "
            f"free space or make {self.dir} writable, then: harness study resume {self.dir}"
        )
        self._free_reserve()  # on a full disk, this is the room the manifest needs
        try:
            self.save()
        except StorageProblem:
            pass  # the previous manifest.json is intact (atomic writes); resume reconciles it
        self.observer(events.StudyAborted(message=self.manifest.message))
        raise StorageProblem(self.manifest.message) from error

    # -- one run -----------------------------------------------------------------------------

    def run_one(self, planned: PlannedRun, placement: Placement | None = None) -> RunRecord:
        """Run one planned run (on ``placement``, else the first GPUs listed); record its outcome."""
        try:
            return self._run_one(planned, placement)
        except StorageProblem as e:
            self._storage_stop(planned.run_id, e)
            raise  # not reached: _storage_stop raises

    def _start_record(self, record: RunRecord, placement: Placement) -> None:
        record.attempts += 1
        record.status = "running"
        record.started_at = manifest_io.now_iso()
        record.finished_at = None
        record.reason = record.message = None
        record.exit_code = record.container_id = None
        record.headline = {}
        record.runner = self.runtime.name
        record.gpus = list(placement.gpus)
        record.gpu_uuids = []
        record.cpus = list(placement.cpus) if placement.cpus is not None else None
        record.numa_nodes = list(placement.mems) if placement.mems is not None else None
        record.overlapped_with = []
        self.save()

    def _run_one(self, planned: PlannedRun, placement: Placement | None) -> RunRecord:
        record = self.manifest.record(planned.run_id)
        exp = self.plan.experiment(planned.experiment_id)
        if placement is None:
            placement = Placement(gpus=tuple(assign_gpus(self.study.execution, exp)))
        gpus = list(placement.gpus)
        self._start_record(record, placement)
        self.observer(events.RunStarted(planned, exp, tuple(str(g) for g in gpus),
                                        placement.describe()))
        run_dir = fresh_run_dir(self.dir, planned.run_id, record.attempts)
        info = RunInfo(study=self.study.name, experiment_id=planned.experiment_id,
                       cycle=planned.cycle, run_id=planned.run_id)
        attempt = self.launcher.attempt(info, exp, run_dir, gpus, cpus=placement.cpus,
                                        mems=placement.mems)
        with self._manifest_lock:
            self._engine_gone = self._engine_gone or attempt.engine_gone
            record_attempt(record, attempt, stopping=self.stopping)
            if record.status == "interrupted":
                aside = set_aside(self.dir, planned.run_id, f"attempt{record.attempts}")
                self._aside[planned.run_id] = aside
                record.message = f"{record.message}; its partial files are in {aside}"
            record.overlapped_with = overlapping(record, attempt.verdict.result, self.manifest)
        self.save()
        self.observer(events.RunFinished(planned, record, attempt.verdict.result))
        return record
