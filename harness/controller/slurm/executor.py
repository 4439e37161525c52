"""The Slurm controller: submit each pending run as a job, track the jobs, merge their records.

Up to execution.slurm.max_jobs jobs are queued or running at once. Resuming re-attaches to the
jobs still queued or running (their ids are in the manifest) and submits only runs not done.
Ctrl+C or SIGTERM cancels this controller's jobs (scancel) and marks their runs interrupted,
except those whose job had already finished: they keep what their node recorded.
Detached (``--detach``), it submits every pending run, each job after the one max_jobs before it
(afterany), and returns; ``harness study status`` then settles finished jobs.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.config.study import Study
from harness.config.sweep import Plan, PlannedRun
from harness.controller.outcome import read_result
from harness.controller.rundirs import fresh_run_dir
from harness.controller.slurm.commands import JobState, SlurmCli
from harness.controller.slurm.job import SCRIPT, gpus_for_job, job_script, sbatch_args
from harness.controller.slurm.states import is_live
from harness.controller.slurm.track import live_jobs, poll, settle
from harness.errors import EnvironmentProblem, Interrupted, RunFailure
from harness.results import events
from harness.results import manifest as manifest_io
from harness.results.reasons import FailureReason
from harness.results.schema import Manifest, RunRecord, SlurmJob

#: how long Ctrl+C waits for cancelled jobs to end (Slurm's KillWait plus a container's stop)
CANCEL_WAIT_S = 60.0


class SlurmStudy:
    """Executes a plan as Slurm jobs and keeps the manifest current (its only writer)."""

    def __init__(self, study: Study, plan: Plan, study_dir: Path, manifest: Manifest, *,
                 cli: SlurmCli | None = None, observer: events.Observer = events.ignore,
                 keep_failed: bool = False, detach: bool = False,
                 sleep: Callable[[float], None] | None = None) -> None:
        if study.execution.slurm is None:
            raise EnvironmentProblem("the slurm executor needs execution.slurm")
        self.study = study
        self.options = study.execution.slurm
        self.plan = plan
        self.dir = study_dir.resolve()
        self.manifest = manifest
        self.cli = cli or SlurmCli()
        self.observer = observer
        self.keep_failed = keep_failed
        self.detach = detach
        self._stop = threading.Event()
        self.sleep = sleep or self._stop.wait
        self.signal_name: str | None = None
        self._planned = {p.run_id: p for p in plan.runs}

    def pending(self) -> list[PlannedRun]:
        """Planned runs still to submit, in plan order (failed ones too unless kept)."""
        keep = {"done", "failed"} if self.keep_failed else {"done"}
        status = {r.run_id: r.status for r in self.manifest.runs}
        return [r for r in self.plan.runs if status.get(r.run_id) not in keep]

    def save(self) -> None:
        """Rewrite the manifest atomically."""
        manifest_io.save(self.manifest, self.dir)

    @property
    def stopping(self) -> bool:
        """Whether Ctrl+C or SIGTERM asked the controller to stop."""
        return self._stop.is_set()

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_signal(signum: int, frame: object) -> None:
            self.signal_name = self.signal_name or signal.Signals(signum).name
            self._stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def execute(self) -> Manifest:
        """Submit and track every pending run; the final manifest (or, detached, as submitted).

        Raises Interrupted after Ctrl+C/SIGTERM, once this controller's jobs are cancelled.
        """
        with manifest_io.StudyLock(self.dir), self._signals():
            self.manifest.state = "running"
            self.manifest.message = None
            tracked = live_jobs(self.manifest)
            self._settle(tracked)  # re-attach: jobs that ended meanwhile are settled now
            todo = [p for p in self.pending() if p.run_id not in tracked]
            self.save()
            self.observer(events.StudyStarted(total=len(self.plan.runs), todo=len(todo)))
            return self._loop(tracked, todo)

    def _loop(self, tracked: dict[str, str], todo: list[PlannedRun]) -> Manifest:
        submitted: list[str] = list(tracked.values())
        failures = 0
        limit = self.options.max_jobs
        while True:
            while todo and (self.detach or len(tracked) < limit) and not self.stopping:
                planned = todo.pop(0)
                after = submitted[-limit] if self.detach and len(submitted) >= limit else None
                job_id = self._submit(planned, after)
                if job_id is None:
                    failures += 1
                    if failures >= self.study.execution.max_consecutive_failures:
                        return self._abort(self.manifest.record(planned.run_id))
                    continue
                failures = 0
                tracked[planned.run_id] = job_id
                submitted.append(job_id)
            if self.detach:
                return self._detached(len(tracked))
            self._settle(tracked)
            if not tracked and not todo:
                return self._finish()
            if self.stopping:
                return self._interrupt(tracked)
            self.sleep(self.options.poll_s)
            if self.stopping:
                return self._interrupt(tracked)

    def _settle(self, tracked: dict[str, str]) -> None:
        for record in poll(self.dir, self.manifest, tracked, self.cli):
            planned = self._planned[record.run_id]
            result, _ = read_result(self.dir / "runs" / record.run_id)
            self.observer(events.RunFinished(planned, record, result))
        self.save()

    def _submit(self, planned: PlannedRun, after: str | None) -> str | None:
        """Submit one run's job; its id, or None when sbatch refused it (the run is failed)."""
        record = self.manifest.record(planned.run_id)
        exp = self.plan.experiment(planned.experiment_id)
        _start(record)
        run_dir = fresh_run_dir(self.dir, planned.run_id, record.attempts)
        script = run_dir / SCRIPT
        script.write_text(job_script(self.options, study_dir=self.dir, run_id=planned.run_id),
                          encoding="utf-8")
        args = sbatch_args(self.options, name=f"harness-{self.study.name}-{planned.run_id}",
                           run_dir=run_dir, gpus=gpus_for_job(self.options,
                                                              self.study.execution, exp),
                           after=after)
        try:
            job_id = self.cli.submit(args, script)
        except (RunFailure, EnvironmentProblem) as e:
            record.status, record.reason = "failed", FailureReason.SLURM_SUBMIT_FAILED
            record.message = str(e)
            record.finished_at = manifest_io.now_iso()
            self.save()
            return None
        record.slurm = SlurmJob(job_id=job_id, submitted_at=manifest_io.now_iso())
        self.save()
        self.observer(events.RunStarted(planned, exp))
        return job_id

    def _detached(self, jobs: int) -> Manifest:
        self.manifest.message = (
            f"{jobs} Slurm jobs queued or running; no controller is attached. See where the study "
            f"stands with: harness study status {self.dir} (it records finished runs); "
            f"re-attach with: harness study resume {self.dir}")
        self.save()
        return self.manifest

    def _abort(self, record: RunRecord) -> Manifest:
        self.manifest.state = "aborted"
        self.manifest.message = (
            f"stopped: sbatch refused {self.study.execution.max_consecutive_failures} jobs in a "
            f"row (execution.max_consecutive_failures); last: {record.message}. Jobs already "
            f"submitted go on; fix execution.slurm, then: harness study resume {self.dir}")
        self.save()
        self.observer(events.StudyAborted(message=self.manifest.message))
        return self.manifest

    def _finish(self) -> Manifest:
        failed = [r for r in self.manifest.runs if r.status != "done"]
        self.manifest.state = "incomplete" if failed else "complete"
        self.manifest.message = (f"{len(failed)} runs not done; "
                                 f"{manifest_io.next_step(self.manifest, self.dir)}" if failed else None)
        self.save()
        return self.manifest

    def _interrupt(self, tracked: dict[str, str]) -> Manifest:
        """Cancel this controller's jobs, settle their runs, and raise Interrupted.

        A run whose job finished before the cancel keeps what its node recorded (a done run
        stays done); a cancelled one is interrupted, and so is one whose job has not ended
        within CANCEL_WAIT_S.
        """
        self.cli.cancel(tracked.values())
        states = self._wait_gone(list(tracked.values()))
        for run_id, job_id in tracked.items():
            record = self.manifest.record(run_id)
            state = states.get(job_id)
            if state is not None and is_live(state.state):
                record.status, record.reason = "interrupted", FailureReason.INTERRUPTED
                record.message = (f"Slurm job {job_id} cancelled by this controller when it was "
                                  f"stopped; still {state.state} after {CANCEL_WAIT_S:g} s")
                record.finished_at = manifest_io.now_iso()
                if record.slurm is not None:
                    record.slurm.state = state.state
            else:
                settle(self.dir, record, state, cancelled_here=True)
            result, _ = read_result(self.dir / "runs" / run_id)
            self.observer(events.RunFinished(self._planned[run_id], record, result))
        done = sum(r.status == "done" for r in self.manifest.runs)
        self.manifest.state = "interrupted"
        self.manifest.message = (
            f"interrupted by {self.signal_name or 'a signal'}: {done}/{len(self.manifest.runs)} "
            f"runs done; {len(tracked)} Slurm jobs cancelled; "
            f"{manifest_io.next_step(self.manifest, self.dir)}")
        self.save()
        self.observer(events.StudyInterrupted(message=self.manifest.message))
        raise Interrupted(self.manifest.message)

    def _wait_gone(self, job_ids: list[str], limit_s: float = CANCEL_WAIT_S
                   ) -> dict[str, JobState]:
        """Wait until cancelled jobs have ended (their nodes stop the runs' containers).

        Returns what Slurm last said of each job it still knows.
        """
        deadline = time.monotonic() + limit_s
        states = self.cli.query(job_ids)
        while any(j in states and is_live(states[j].state) for j in job_ids) \
                and time.monotonic() < deadline:
            time.sleep(1.0)
            states = self.cli.query(job_ids)
        return states


def _start(record: RunRecord) -> None:
    """A run's record as a new attempt begins (submitted, not yet settled)."""
    record.attempts += 1
    record.status = "running"
    record.started_at = manifest_io.now_iso()
    record.finished_at = record.reason = record.message = None
    record.exit_code = record.container_id = None
    record.duration_s = record.agent_s = None
    record.headline = {}
    record.runner = None
    record.slurm = None
    record.gpus, record.gpu_uuids, record.gpu_settings = [], [], None  # the node's, once settled


def refresh(study_dir: Path, cli: SlurmCli | None = None) -> Manifest | None:
    """Settle the finished jobs of a detached study (``harness study status``); its manifest.

    None when a controller holds the study (it keeps the manifest current itself).
    """
    if manifest_io.is_running(study_dir):
        return None
    with manifest_io.StudyLock(study_dir):
        manifest = manifest_io.load(study_dir)
        tracked = live_jobs(manifest)
        if not tracked:
            return manifest
        poll(study_dir, manifest, tracked, cli or SlurmCli())
        if not tracked and manifest.state == "running":
            left = [r for r in manifest.runs if r.status != "done"]
            manifest.state = "incomplete" if left else "complete"
            manifest.message = (f"{len(left)} runs not done; "
                                f"{manifest_io.next_step(manifest, study_dir)}"
                                if left else None)
        manifest_io.save(manifest, study_dir)
        return manifest
