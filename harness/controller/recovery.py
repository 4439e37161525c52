"""After a lost controller: stray containers stopped and removed, the manifest reconciled.

A run whose result.json was completely written is kept as done; any other run the lost
controller left running is marked interrupted and its partial files are set aside. GPU
settings (power limit, clock locks) that the lost controller journalled and did not restore
are restored first (``harness.controller.gpucontrol``).
"""

from __future__ import annotations

from pathlib import Path

from harness.controller.gpucontrol import restore_journal
from harness.controller.outcome import keep_log, mark_done, read_result, write_error, written_at
from harness.controller.rundirs import set_aside
from harness.controller.runtimes import RUNNERS, select_runtime
from harness.controller.runtimes.base import Orphan, Runtime
from harness.errors import EnvironmentProblem, StorageProblem
from harness.results import manifest as manifest_io
from harness.results.events import Observer, OrphanFound, RunRecovered
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, Manifest
from harness.secrets import Scrubber

Reaped = tuple[Orphan, int | None, bytes]


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


class Recovery:
    """Settles what a lost controller left of one study folder (the caller saves the manifest)."""

    def __init__(self, study: str, study_dir: Path, manifest: Manifest, runtime: Runtime,
                 observer: Observer, scrubber: Scrubber,
                 gpu_library: GpuLibrary | None = None) -> None:
        self.study = study
        self.dir = study_dir
        self.manifest = manifest
        self.runtime = runtime
        self.observer = observer
        self.scrubber = scrubber
        self.gpu_library = gpu_library

    def recover(self) -> None:
        """Restore lost GPU settings, reap stray containers, settle runs left running or lost."""
        if self.manifest.gpu_journal and self.gpu_library is not None:
            restore_journal(self.manifest, self.gpu_library, self.observer)
        for orphan, code, log in self._reap_orphans():
            self.reconcile(orphan.run_id, exit_code=code, log=log,
                           container_id=orphan.container_id)
        for rec in self.manifest.runs:
            if rec.status == "running":
                self.reconcile(rec.run_id, exit_code=None, log=b"", container_id=None)
            elif rec.status == "done":
                result, why = read_result(self.dir / "runs" / rec.run_id)
                if result is None:
                    rec.status = "failed"
                    rec.reason = FailureReason.RESULT_LOST
                    rec.message = f"marked done, but its result is gone or invalid: {why or 'absent'}"
                    self.observer(RunRecovered(rec.run_id, rec.status, rec.message))

    def _reapers(self) -> list[Runtime]:
        """This runtime, and that of another runner that left runs running (if it answers)."""
        reapers = [self.runtime]
        others = {r.runner for r in self.manifest.runs
                  if r.status == "running" and r.runner not in (None, self.runtime.name)}
        for runner in RUNNERS:
            if runner not in others:
                continue
            try:
                reapers.append(select_runtime(runner)[0])
            except EnvironmentProblem:
                pass  # its engine does not answer: nothing of it can be stopped now
        return reapers

    def _reap_orphans(self) -> list[Reaped]:
        """Stop and remove this study's containers left by lost controllers."""
        mine: list[Reaped] = []
        for runtime in self._reapers():
            others: dict[Path, list[Orphan]] = {}
            for orphan in runtime.find_orphans(self.study):
                if orphan.controller_alive():
                    continue  # a live controller's container, not a stray
                if _same_dir(orphan.study_dir, self.dir):
                    self.observer(OrphanFound(orphan.container_id[:12], orphan.run_id,
                                              orphan.controller_pid))
                    mine.append((orphan, *runtime.reap(orphan)))
                else:
                    others.setdefault(orphan.study_dir, []).append(orphan)
            for study_dir, orphans in others.items():
                self._reap_elsewhere(runtime, study_dir, orphans)
        return mine

    def _reap_elsewhere(self, runtime: Runtime, study_dir: Path, orphans: list[Orphan]) -> None:
        """Orphans of another folder of this study: reap them if no controller runs it."""
        lock = manifest_io.StudyLock(study_dir)
        try:
            if study_dir.is_dir() and not lock.try_acquire():
                return  # a live controller runs that folder; its containers are not strays
        except StorageProblem:
            pass
        try:
            reaped = [(o, *runtime.reap(o)) for o in orphans]
            for o, _, _ in reaped:
                self.observer(OrphanFound(o.container_id[:12], o.run_id, o.controller_pid,
                                          str(study_dir)))
            try:
                other = manifest_io.load(study_dir)
            except (OSError, ValueError):
                return
            helper = Recovery(self.study, study_dir, other, runtime, self.observer, self.scrubber)
            for o, code, log in reaped:
                helper.reconcile(o.run_id, exit_code=code, log=log, container_id=o.container_id)
            manifest_io.save(other, study_dir)
        except StorageProblem:
            pass
        finally:
            lock.release()

    def reconcile(
        self, run_id: str, *, exit_code: int | None, log: bytes, container_id: str | None
    ) -> None:
        """Settle a run whose controller was lost (done if its result is complete, else interrupted)."""
        try:
            rec = self.manifest.record(run_id)
        except KeyError:
            return
        if rec.status != "running":
            return
        run_dir = self.dir / "runs" / run_id
        if log:
            keep_log(run_dir, log.decode("utf-8", "replace"))
        if run_dir.is_dir():
            self.scrubber.run_dir(run_dir)
        result, _ = read_result(run_dir)
        rec.exit_code = exit_code
        rec.container_id = container_id or rec.container_id
        if result is not None:
            mark_done(rec, result, written_at(run_dir / "result.json"))
            rec.message = "kept: its result was completely written before the controller was lost"
        else:
            rec.status = "interrupted"
            rec.reason = FailureReason.CONTROLLER_LOST
            rec.finished_at = manifest_io.now_iso()
            what = (f"its container {container_id[:12]} was stopped and removed"
                    if container_id else "nothing of it was left running")
            rec.message = f"the controller running this study was lost during the run; {what}"
            if run_dir.is_dir():
                write_error(run_dir, run_id, FailureReason.CONTROLLER_LOST, rec.message,
                            self.scrubber)
                aside = set_aside(self.dir, run_id, f"attempt{rec.attempts}")
                rec.message += f"; its partial files are in {aside}"
        self.observer(RunRecovered(run_id, rec.status, rec.message))
