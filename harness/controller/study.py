"""The run loop: one run after another in plan order, with gaps, timeouts and a manifest.

It survives faults: each run's failure is recorded with a named reason and the study goes on;
Ctrl+C or SIGTERM stops the run in flight gracefully (a second one forces); a study whose
controller was lost is recovered at the next start (stray containers stopped, their runs
marked interrupted unless their result was completely written); an output folder that cannot
be written stops the study with the manifest consistent; and a study is resumed without
re-running what is done.
"""

from __future__ import annotations

import difflib
import os
import queue
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.config.study import Study
from harness.config.sweep import Plan, PlannedRun
from harness.controller.images import image_tag
from harness.controller.runtimes.base import RunJob, RunOutcome, Runtime
from harness.controller.secrets import Scrubber, forwarded_env
from harness.controller.thermal import cooldown, host_gpu_uuids
from harness.errors import (
    EnvironmentProblem,
    Interrupted,
    RunFailure,
    StorageProblem,
    UserInputError,
)
from harness.results import manifest as manifest_io
from harness.results.io import atomic_write_json, atomic_write_text, read_model
from harness.results.schema import (
    ExperimentResult,
    ImageInfo,
    Manifest,
    RunError,
    RunInfo,
    RunRecord,
    RunSpec,
)

PATH_PREFIXES = ("/", "./", "../", "~")
ATTEMPTS = ".attempts"
#: space held while a study runs and freed to write the final manifest on a full disk
RESERVE = ".reserve"
RESERVE_MIN_BYTES = 256 * 1024
#: the agent's exit code when it cannot write its output folder (harness.agent)
EXIT_STORAGE = 74
#: reasons the controller decides itself; its error.json then replaces the agent's
CONTROLLER_REASONS = {
    "timeout", "out_of_memory", "killed", "interrupted", "controller_lost", "image_missing",
    "model_not_found", "container_create_failed", "docker_error", "unsafe_container",
    "result_invalid", "result_missing", "agent_exit",
}


@dataclass(frozen=True)
class ModelLocation:
    """Where a model lives on the host: a folder, or a hub id in a cache."""

    ref: str
    host_path: Path | None
    hf_cache: Path | None


def default_hf_cache() -> Path:
    """The host's Hugging Face cache ($HF_HOME, else ~/.cache/huggingface)."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _from(base: Path | None, path: Path) -> Path:
    return path if path.is_absolute() or base is None else base / path


def locate_model(model: str, study: Study, base: Path | None = None) -> ModelLocation:
    """Resolve a model reference to a host folder or a cached hub id (paths from ``base``)."""
    candidate = _from(base, Path(model).expanduser())
    if candidate.exists():
        return ModelLocation(model, candidate.resolve(), None)
    if model.startswith(PATH_PREFIXES):
        raise RunFailure(
            f"the model folder {model!r} does not exist (looked at {candidate})",
            reason="model_not_found",
        )
    cache = _from(base, Path(study.hf_cache).expanduser()) if study.hf_cache else default_hf_cache()
    return ModelLocation(model, None, cache.resolve() if cache.exists() else None)


def image_for(study: Study, backend: str, device: str) -> str:
    """The image a run of this backend and device uses (study override or default tag)."""
    return study.images.get(backend) or image_tag(backend, device)


def images_needed(study: Study, plan: Plan) -> list[tuple[str, str]]:
    """The (backend, device) pairs of the default images the plan's runs use, in plan order.

    Backends whose image the study names in its ``images:`` block are left out: those are the
    user's own images, not built by this harness.
    """
    pairs: list[tuple[str, str]] = []
    for planned in plan.experiments:
        pair = (planned.experiment.backend, planned.experiment.device)
        if pair[0] not in study.images and pair not in pairs:
            pairs.append(pair)
    return pairs


def new_study_dir(root: Path, name: str) -> Path:
    """Create results/NAME-YYYYmmddTHHMMSSZ (never reusing an existing folder)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{name}-{stamp}"
    suffix = 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            suffix += 1
            path = root / f"{name}-{stamp}-{suffix}"
        except OSError as e:
            raise StorageProblem(f"cannot create the study folder {path}: {e.strerror}") from e


def headline(result: ExperimentResult) -> dict[str, float | None]:
    """The figures shown per run and kept in the manifest."""
    return {
        "output_tokens_per_s": result.throughput.output_tokens_per_s,
        "j_per_output_token": result.energy.j_per_output_token,
        "e2e_p50_s": result.latency.e2e.p50_s,
        "ttft_p50_s": result.latency.ttft.p50_s,
    }


def read_result(run_dir: Path) -> tuple[ExperimentResult | None, str]:
    """The run folder's result if it is complete and valid, else why not ('' if absent)."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None, ""
    try:
        result = read_model(path, ExperimentResult)
    except (ValueError, OSError) as e:
        return None, str(e)
    if result.run.run_id != run_dir.name:
        return None, f"{path}: belongs to run {result.run.run_id!r}, not {run_dir.name!r}"
    return result, ""


def classify(
    run_dir: Path, outcome: RunOutcome, *, interrupted: bool = False
) -> tuple[ExperimentResult | None, str, str]:
    """A valid result, or the failure reason and message, from the run folder and outcome.

    result.json is written last and atomically by the agent, so a valid one means the run
    completed, whatever happened afterwards; one that fails validation is never taken as done.
    """
    result, invalid = read_result(run_dir)
    if result is not None:
        return result, "done", ""
    if outcome.reason == "storage_error" or outcome.exit_code == EXIT_STORAGE:
        return None, "storage_error", outcome.error or _agent_message(run_dir) or (
            "the agent could not write its output folder")
    if invalid:
        return None, "result_invalid", invalid
    if outcome.timed_out:
        return None, "timeout", (f"the run did not finish within execution.timeout_s; "
                                 f"stopped after {outcome.duration_s:.0f} s")
    if interrupted:
        return None, "interrupted", outcome.error or "stopped by Ctrl+C or SIGTERM"
    if outcome.oom_killed:
        return None, "out_of_memory", "the container was killed for exceeding its memory limit"
    if outcome.reason:
        return None, outcome.reason, outcome.error or outcome.reason
    err = _agent_error(run_dir)
    if err is not None:
        return None, err.reason, err.message
    if outcome.killed:
        return None, "killed", (f"the agent was killed by SIGKILL from outside the harness "
                                f"(exit code {outcome.exit_code}; docker kill, the kernel, ...)")
    if outcome.exit_code == 0:
        return None, "result_missing", "the agent exited 0 but wrote no result.json"
    return None, "agent_exit", f"the agent exited with code {outcome.exit_code}"


def _agent_error(run_dir: Path) -> RunError | None:
    try:
        return read_model(run_dir / "error.json", RunError)
    except (ValueError, OSError):
        return None


def _agent_message(run_dir: Path) -> str:
    err = _agent_error(run_dir)
    return err.message if err is not None else ""


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


Reporter = Callable[[str, dict[str, Any]], None]


@dataclass
class _Signals:
    """Signals seen while a study runs; the handler only queues (safe in a signal handler)."""

    queue: queue.SimpleQueue[int | None] = field(default_factory=queue.SimpleQueue)
    count: int = 0
    first: str | None = None


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
        report: Reporter | None = None,
        sleep: Callable[[float], None] | None = None,
        keep_failed: bool = False,
        base_dir: Path | None = None,
    ) -> None:
        self.study = study
        self.plan = plan
        self.dir = study_dir
        self.runtime = runtime
        self.manifest = manifest
        self.report = report or (lambda event, data: None)
        self._stop = threading.Event()
        self.sleep: Callable[[float], None] = sleep or self._pause
        self.keep_failed = keep_failed
        self.base_dir = base_dir
        self.scrubber = Scrubber.from_environ()
        self._images: dict[str, ImageInfo | None] = {}
        self._signals = _Signals()
        self._aside: dict[str, Path] = {}  # runs interrupted by Ctrl+C: where their files went

    # -- manifest ----------------------------------------------------------------------------

    def save(self) -> None:
        """Rewrite the manifest atomically."""
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
        with manifest_io.StudyLock(self.dir), self._handle_signals():
            self._hold_reserve()
            try:
                self.recover()
                return self._loop()
            finally:
                self._free_reserve()

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
        except FileNotFoundError:
            pass
        except OSError:
            pass  # a read-only folder; the next start replaces it

    def _loop(self) -> Manifest:
        ex = self.study.execution
        self.manifest.state = "running"
        self.manifest.message = None
        self._save_or_stop()
        consecutive = 0
        previous: PlannedRun | None = None
        todo = self.pending()
        self.report("start", {"total": len(self.plan.runs), "todo": len(todo)})
        for planned in todo:
            if self.stopping:
                break
            if previous is not None:
                gap = ex.cycle_gap_s if planned.cycle != previous.cycle else ex.gap_s
                if gap > 0:
                    self.report("gap", {"seconds": gap})
                    self.sleep(gap)
                    if self.stopping:
                        break
            record = self.run_one(planned)
            previous = planned
            if self.stopping:
                break
            consecutive = consecutive + 1 if record.status == "failed" else 0
            if consecutive >= ex.max_consecutive_failures:
                self.manifest.state = "aborted"
                self.manifest.message = (
                    f"stopped after {consecutive} consecutive failed runs "
                    f"(execution.max_consecutive_failures); last reason: {record.reason}"
                )
                self._save_or_stop()
                self.report("aborted", {"message": self.manifest.message})
                return self.manifest
        left = self.pending()
        if self.stopping and left:
            self._interrupted(len(left))
        failed = [r for r in self.manifest.runs if r.status != "done"]
        self.manifest.state = "incomplete" if failed else "complete"
        self.manifest.message = f"{len(failed)} runs not done" if failed else None
        self._save_or_stop()
        return self.manifest

    def _interrupted(self, left: int) -> None:
        done = sum(r.status == "done" for r in self.manifest.runs)
        aside = "; ".join(f"run {run_id} was stopped, its partial files are in {path}"
                          for run_id, path in self._aside.items())
        self.manifest.state = "interrupted"
        self.manifest.message = (
            f"interrupted by {self._signals.first or 'a signal'}: {done}/{len(self.manifest.runs)} "
            f"runs done, {left} to go" + (f"; {aside}" if aside else "")
            + f". Continue with: harness study resume {self.dir}"
        )
        self._save_or_stop()
        self.report("interrupted", {"message": self.manifest.message})
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
                rec.status = "done"  # complete before the folder filled up: keep it
                rec.agent_s = result.timings.total_s
                rec.headline = headline(result)
                rec.finished_at = manifest_io.now_iso()
            elif rec.status == "running":
                rec.status = "interrupted"
                rec.reason = "storage_error"
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
        self.report("aborted", {"message": self.manifest.message})
        raise StorageProblem(self.manifest.message) from error

    # -- signals -----------------------------------------------------------------------------

    @contextmanager
    def _handle_signals(self) -> Iterator[None]:
        """While the study runs: first SIGINT/SIGTERM stops gracefully, the second forces."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        watcher = threading.Thread(target=self._watch_signals, name="harness-signals",
                                   daemon=True)
        watcher.start()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._signals.queue.put(None)
            watcher.join(timeout=5)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._signals.count += 1
        if self._signals.count > 2:  # a third: give up waiting, unwind at once
            raise KeyboardInterrupt
        self._signals.queue.put(signum)  # SimpleQueue.put is safe in a signal handler

    def _watch_signals(self) -> None:
        seen = 0
        while True:
            signum = self._signals.queue.get()
            if signum is None:
                return
            seen += 1
            name = signal.Signals(signum).name
            if seen == 1:
                self._signals.first = name
                self._stop.set()
                self.report("interrupt", {"signal": name, "force": False})
                action = self.runtime.stop
            else:
                self.report("interrupt", {"signal": name, "force": True})
                action = getattr(self.runtime, "kill", None) or self.runtime.stop
            threading.Thread(target=action, name=f"harness-{name}", daemon=True).start()

    # -- recovery ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Reconcile the manifest with what a lost controller left: containers and files."""
        for orphan, code, log in self._reap_orphans():
            self._reconcile(orphan.run_id, exit_code=code, log=log,
                            container_id=orphan.container_id)
        for rec in self.manifest.runs:
            if rec.status == "running":
                self._reconcile(rec.run_id, exit_code=None, log=b"", container_id=None)
            elif rec.status == "done":
                result, why = read_result(self.dir / "runs" / rec.run_id)
                if result is None:
                    rec.status = "failed"
                    rec.reason = "result_lost"
                    rec.message = f"marked done, but its result is gone or invalid: {why or 'absent'}"
                    self.report("recovered", {"run_id": rec.run_id, "status": rec.status,
                                              "message": rec.message})
        self._save_or_stop()

    def _reap_orphans(self) -> list[tuple[Any, int | None, bytes]]:
        """Stop and remove this study's containers left by lost controllers."""
        runtime: Any = self.runtime
        if not hasattr(runtime, "find_orphans"):
            if not any(r.runner == "docker" and r.status == "running" for r in self.manifest.runs):
                return []  # no container can be left (e.g. resuming with the local runner)
            try:
                from harness.controller.runtimes.docker import DockerRuntime

                runtime = DockerRuntime()
            except EnvironmentProblem:
                return []
        mine: list[tuple[Any, int | None, bytes]] = []
        others: dict[Path, list[Any]] = {}
        for orphan in runtime.find_orphans(self.study.name):
            if orphan.controller_alive():
                continue  # a live controller's container, not a stray
            if _same_dir(orphan.study_dir, self.dir):
                self.report("orphan", {"container": orphan.container_id[:12],
                                       "run_id": orphan.run_id, "pid": orphan.controller_pid})
                code, log = runtime.reap(orphan)
                mine.append((orphan, code, log))
            else:
                others.setdefault(orphan.study_dir, []).append(orphan)
        for study_dir, orphans in others.items():
            self._reap_elsewhere(runtime, study_dir, orphans)
        return mine

    def _reap_elsewhere(self, runtime: Any, study_dir: Path, orphans: list[Any]) -> None:
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
                self.report("orphan", {"container": o.container_id[:12], "run_id": o.run_id,
                                       "pid": o.controller_pid, "study_dir": str(study_dir)})
            try:
                other = manifest_io.load(study_dir)
            except (OSError, ValueError):
                return
            helper = StudyRun(self.study, self.plan, study_dir, self.runtime, other,
                              report=self.report)
            for o, code, log in reaped:
                helper._reconcile(o.run_id, exit_code=code, log=log, container_id=o.container_id)
            helper.save()
        except StorageProblem:
            pass
        finally:
            lock.release()

    def _reconcile(
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
        if log and run_dir.is_dir() and not (run_dir / "container.log").exists():
            atomic_write_text(run_dir / "container.log", log.decode("utf-8", "replace"))
        if run_dir.is_dir():
            self.scrubber.run_dir(run_dir)
        result, _ = read_result(run_dir)
        rec.exit_code = exit_code
        rec.container_id = container_id or rec.container_id
        if result is not None:
            rec.status = "done"
            rec.reason = None
            rec.agent_s = result.timings.total_s
            rec.headline = headline(result)
            rec.finished_at = datetime.fromtimestamp(
                (run_dir / "result.json").stat().st_mtime, UTC
            ).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            rec.message = "kept: its result was completely written before the controller was lost"
        else:
            rec.status = "interrupted"
            rec.reason = "controller_lost"
            rec.finished_at = manifest_io.now_iso()
            what = (f"its container {container_id[:12]} was stopped and removed"
                    if container_id else "nothing of it was left running")
            rec.message = f"the controller running this study was lost during the run; {what}"
            if run_dir.is_dir():
                self._write_error(run_id, run_dir, "controller_lost", rec.message)
                rec.message += f"; its partial files are in {self._set_aside(run_id, rec.attempts)}"
        self.report("recovered", {"run_id": run_id, "status": rec.status, "message": rec.message})

    # -- one run -----------------------------------------------------------------------------

    def _image(self, experiment_backend: str, device: str) -> tuple[str, ImageInfo | None]:
        tag = image_for(self.study, experiment_backend, device)
        if tag not in self._images:
            self._images[tag] = self.runtime.prepare(tag)
        return tag, self._images[tag]

    def _job(self, planned: PlannedRun, run_dir: Path, image: str) -> RunJob:
        exp = self.plan.experiment(planned.experiment_id)
        where = locate_model(exp.model, self.study, self.base_dir)
        ex = self.study.execution
        return RunJob(
            run_id=planned.run_id,
            study=self.study.name,
            run_dir=run_dir,
            image=image,
            model_host_path=where.host_path,
            model_ref=where.ref,
            hf_cache=where.hf_cache,
            gpus=list(ex.gpus),
            device=exp.device,
            timeout_s=ex.timeout_s,
            backend=exp.backend,
            mem_limit=ex.mem_limit,
            pids_limit=ex.pids_limit,
            env=forwarded_env(),
        )

    def _set_aside(self, run_id: str, attempt: int) -> Path:
        """Move a run folder into runs/.attempts/RUNID-attemptN (never overwriting one)."""
        run_dir = self.dir / "runs" / run_id
        aside = self.dir / "runs" / ATTEMPTS / f"{run_id}-attempt{attempt}"
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(f"{run_id}-attempt{attempt}-{n}")
        try:
            aside.parent.mkdir(parents=True, exist_ok=True)
            run_dir.rename(aside)
        except OSError as e:
            raise StorageProblem(f"cannot move {run_dir} aside: {e.strerror or e}") from e
        return aside.relative_to(self.dir)

    def _fresh_run_dir(self, run_id: str, attempt: int) -> Path:
        run_dir = self.dir / "runs" / run_id
        if run_dir.exists() or run_dir.is_symlink():
            self._set_aside(run_id, attempt - 1)
        try:
            run_dir.mkdir(parents=True)
        except OSError as e:
            raise StorageProblem(f"cannot create {run_dir}: {e.strerror or e}") from e
        return run_dir

    def _write_error(self, run_id: str, run_dir: Path, reason: str, message: str) -> None:
        """error.json with the controller's reason; the agent's own is kept inside it."""
        agent = _agent_error(run_dir)
        if agent is not None and agent.reason == reason:
            return
        if agent is not None and (run_dir / "error.json").exists():
            message = f"{message} (the agent said: {agent.reason}: {agent.message})"
        atomic_write_json(run_dir / "error.json", RunError(
            run_id=run_id, reason=reason, message=self.scrubber.text(message) or "",
            where="controller", traceback=agent.traceback if agent is not None else None,
        ))

    def run_one(self, planned: PlannedRun) -> RunRecord:
        """Run one planned run and record its outcome in the manifest."""
        try:
            return self._run_one(planned)
        except StorageProblem as e:
            self._storage_stop(planned.run_id, e)
            raise  # not reached: _storage_stop raises

    def _run_one(self, planned: PlannedRun) -> RunRecord:
        record = self.manifest.record(planned.run_id)
        exp = self.plan.experiment(planned.experiment_id)
        record.attempts += 1
        record.status = "running"
        record.started_at = manifest_io.now_iso()
        record.finished_at = None
        record.reason = record.message = None
        record.exit_code = record.container_id = None
        record.headline = {}
        record.runner = self.runtime.name
        self.save()
        self.report("run_start", {"run": planned, "experiment": exp})

        run_dir = self._fresh_run_dir(planned.run_id, record.attempts)
        tag, image = self._image(exp.backend, exp.device)
        job: RunJob | None = None
        outcome = RunOutcome(exit_code=None, duration_s=0.0, reason="interrupted",
                             error="interrupted before the run started")
        try:
            job = self._job(planned, run_dir, tag)
        except RunFailure as e:
            outcome = RunOutcome(exit_code=None, duration_s=0.0, reason=e.reason, error=str(e))
        spec = RunSpec(
            run=RunInfo(
                study=self.study.name, experiment_id=planned.experiment_id,
                cycle=planned.cycle, run_id=planned.run_id,
            ),
            experiment=exp,
            model_path=self.runtime.model_path_for_agent(job) if job else exp.model,
            image=image,
            gpu_uuids=host_gpu_uuids(self.study.execution.gpus) if exp.device == "cuda" else [],
            runner=self.runtime.name,
        )
        atomic_write_json(run_dir / "config.json", spec)
        if job is not None:
            ex = self.study.execution
            record.thermal = cooldown(
                exp.device, ex.gpus, ex.cooldown_to_c, ex.cooldown_timeout_s, sleep=self.sleep
            )
            if not self.stopping:
                outcome = self.runtime.run(job)
        result, reason, message = classify(run_dir, outcome, interrupted=self.stopping)
        if reason == "storage_error":
            raise StorageProblem(message)
        message = self.scrubber.text(message) or ""

        record.finished_at = manifest_io.now_iso()
        record.duration_s = outcome.duration_s
        record.exit_code = outcome.exit_code
        record.container_id = outcome.container_id
        record.image = outcome.image or image
        if not (run_dir / "container.log").exists():
            atomic_write_text(run_dir / "container.log", f"(no log: {message or 'none'})\n")
        self.scrubber.run_dir(run_dir)
        if result is not None:
            record.status = "done"
            record.agent_s = result.timings.total_s
            record.headline = headline(result)
            if outcome.exit_code not in (0, None):
                record.message = (f"result complete; the agent then exited with code "
                                  f"{outcome.exit_code}")
        else:
            record.reason = reason
            record.message = message
            self._write_error(planned.run_id, run_dir, reason, message)
            if reason == "interrupted" and self.stopping:
                record.status = "interrupted"
                aside = self._set_aside(planned.run_id, record.attempts)
                self._aside[planned.run_id] = aside
                record.message = f"{message}; its partial files are in {aside}"
            else:
                record.status = "failed"
        self.save()
        self.report("run_end", {"run": planned, "record": record, "result": result})
        return record


# -- starting and resuming -------------------------------------------------------------------


@dataclass
class Prepared:
    """A study ready to execute, and what the user should be told first."""

    run: StudyRun
    study_dir: Path
    runner_why: str
    notes: list[str] = field(default_factory=list)


def _runtime(choice: str) -> tuple[Runtime, str]:
    from harness.controller.runtimes import select_runtime

    if choice not in ("auto", "docker", "local"):
        raise UserInputError(f"--runner: expected auto, docker or local, got {choice!r}")
    return select_runtime(choice)


def preflight(study: Study, plan: Plan, runtime: Runtime, base: Path | None) -> list[str]:
    """Warnings about runs that will fail as things stand (missing images or model folders)."""
    notes = []
    models: set[str] = set()
    tags: set[str] = set()
    for planned in plan.experiments:
        exp = planned.experiment
        if exp.model not in models:
            models.add(exp.model)
            try:
                locate_model(exp.model, study, base)
            except RunFailure as e:
                notes.append(f"{e}; its runs will fail unless it appears")
        tag = image_for(study, exp.backend, exp.device)
        if runtime.name == "docker" and tag not in tags:
            tags.add(tag)
            if runtime.prepare(tag) is None:
                notes.append(f"image {tag!r} is not present; runs of backend {exp.backend} will "
                             f"fail unless it is built ('harness images build --backend "
                             f"{exp.backend} --device {exp.device}')")
    return notes


def start_study(
    file: Path,
    *,
    runner: str | None = None,
    output_dir: Path | None = None,
    report: Reporter | None = None,
) -> Prepared:
    """Validate a study file, create its folder, plan and manifest; nothing runs yet."""
    from harness.config.load import plan_study

    study, plan = plan_study(file)
    runtime, why = _runtime(runner or study.execution.runner)
    root = output_dir or Path(study.output_dir)
    if root.exists() and not root.is_dir():
        raise StorageProblem(f"output folder {root} is a file, not a folder")
    study_dir = new_study_dir(root, study.name)
    try:
        shutil.copyfile(file, study_dir / "study.yaml")
    except OSError as e:
        raise StorageProblem(f"cannot write {study_dir / 'study.yaml'}: {e.strerror}") from e
    atomic_write_json(study_dir / "plan.json", plan)
    base = Path.cwd()
    manifest = manifest_io.new_manifest(plan, file, working_dir=base)
    manifest.runner = runtime.name
    manifest.runner_reason = why
    manifest_io.save(manifest, study_dir)
    run = StudyRun(study, plan, study_dir, runtime, manifest, report=report, base_dir=base)
    return Prepared(run, study_dir, why, preflight(study, plan, runtime, base))


def _plan_changes(old: Plan, new: Plan) -> list[str]:
    lines = []
    old_ids = {e.id: e for e in old.experiments}
    new_ids = {e.id: e for e in new.experiments}
    for eid in old_ids.keys() - new_ids.keys():
        lines.append(f"experiment {eid} {old_ids[eid].params or ''} is no longer planned")
    for eid in new_ids.keys() - old_ids.keys():
        lines.append(f"experiment {eid} {new_ids[eid].params or ''} is new")
    before = old.execution.model_dump()
    after = new.execution.model_dump()
    for key in before:
        if before[key] != after[key]:
            lines.append(f"execution.{key}: {before[key]!r} -> {after[key]!r}")
    return lines


def study_differences(
    old_text: str | None, new_text: str, old_plan: Plan, new_plan: Plan, old_name: str, new_name: str
) -> list[str]:
    """Readable differences between the study a folder began with and a new version of it."""
    lines = []
    if old_text is not None:
        diff = list(difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), old_name, new_name, n=1, lineterm=""))
        lines += diff[:80] + ([f"... {len(diff) - 80} more diff lines"] if len(diff) > 80 else [])
    return lines + _plan_changes(old_plan, new_plan)


def _archive(study_dir: Path, name: str) -> None:
    """Keep a superseded study.yaml/plan.json as NAME.previous-K.EXT."""
    path = study_dir / name
    stem, ext = name.split(".", 1)
    k = 1
    while (study_dir / f"{stem}.previous-{k}.{ext}").exists():
        k += 1
    shutil.copyfile(path, study_dir / f"{stem}.previous-{k}.{ext}")


def resume_study(
    study_dir: Path,
    *,
    file: Path | None = None,
    runner: str | None = None,
    force: bool = False,
    keep_failed: bool = False,
    report: Reporter | None = None,
) -> Prepared:
    """Prepare a study folder to continue: done runs are kept, the rest will run.

    A study file that differs from the one the folder began with is refused unless forced;
    forced, runs of experiments still planned keep their records and the rest are set aside.
    """
    from harness.config.load import plan_study
    from harness.config.sweep import Plan

    study_dir = Path(study_dir)
    try:
        manifest = manifest_io.load(study_dir)
    except FileNotFoundError as e:
        raise UserInputError(f"{study_dir}: no manifest.json; is this a study folder?") from e
    except ValueError as e:
        raise UserInputError(f"{study_dir}: manifest.json is not valid: {e}") from e
    copy = study_dir / "study.yaml"
    try:
        old_plan = Plan.model_validate_json((study_dir / "plan.json").read_text("utf-8"))
        old_text = copy.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise UserInputError(f"{study_dir}: study.yaml or plan.json is missing or invalid: {e}") from e
    if manifest_io.is_running(study_dir):
        raise UserInputError(f"{study_dir}: another controller is running this study "
                             f"({manifest_io.StudyLock(study_dir).holder() or 'holder unknown'})")

    notes: list[str] = []
    if file is not None:
        source, base = Path(file), Path.cwd()
        study, plan = plan_study(source)
        new_text = source.read_text(encoding="utf-8")
        from harness.config.load import load_study

        try:
            old_study: Study | None = load_study(copy)
        except UserInputError:
            old_study = None
        changed = new_text != old_text and (
            old_study is None or old_study.model_dump() != study.model_dump())
        if new_text != old_text and not changed:
            notes.append(f"{source} differs from {copy} only in comments or layout")
        shown_old: str | None = old_text
    else:
        source = copy
        base = Path(manifest.working_dir) if manifest.working_dir else Path.cwd()
        study, plan = plan_study(copy)
        new_text = old_text
        changed = manifest_io.sha256_file(copy) != manifest.study_file_sha256
        shown_old = None  # the original text is gone; the plan shows what changed
    if study.name != manifest.study:
        raise UserInputError(
            f"{source}: study {study.name!r} is not the study in {study_dir} ({manifest.study!r})")
    if changed:
        differences = study_differences(shown_old, new_text, old_plan, plan,
                                        str(copy), str(source))
        if not force:
            raise UserInputError(
                f"{source} differs from the study {study_dir} began with; refusing to resume "
                "(use --force to continue with the new version: runs of experiments still "
                "planned keep their results, others are set aside)",
                problems=differences or ["the file changed (sha256 differs)"],
            )
        notes += _apply_change(study_dir, manifest, plan, source, differences)

    if runner is None:
        runner = manifest.runner if manifest.runner in ("docker", "local") else None
    runtime, why = _runtime(runner or study.execution.runner)
    if manifest.runner and runtime.name != manifest.runner:
        notes.append(f"this study ran with the {manifest.runner} runner; continuing with "
                     f"{runtime.name} makes its runs less comparable")
    manifest.runner = runtime.name
    manifest.runner_reason = f"resumed: {why}"
    run = StudyRun(study, plan, study_dir, runtime, manifest, report=report,
                   keep_failed=keep_failed, base_dir=base)
    todo = len(run.pending())
    done = sum(r.status == "done" for r in manifest.runs)
    notes.append(f"resuming: {done} runs done and kept, {todo} to run"
                 + (" (failed runs kept as they are)" if keep_failed else ""))
    return Prepared(run, study_dir, why, notes + preflight(study, plan, runtime, base))


def _apply_change(
    study_dir: Path, manifest: Manifest, plan: Plan, source: Path, differences: list[str]
) -> list[str]:
    """Adopt a changed study (forced): new plan, records kept by run id, dropped runs aside."""
    notes = ["continuing with the changed study (--force):", *differences]
    records = {r.run_id: r for r in manifest.runs}
    fresh = {r.run_id: r for r in manifest_io.new_records(plan)}
    runs = []
    for planned in plan.runs:
        rec = records.get(planned.run_id) or fresh[planned.run_id]
        rec.position = planned.position
        runs.append(rec)
    dropped = [r for r in manifest.runs if r.run_id not in fresh]
    for rec in dropped:
        run_dir = study_dir / "runs" / rec.run_id
        if run_dir.exists():
            aside = study_dir / "runs" / ATTEMPTS / f"{rec.run_id}-dropped"
            n = 1
            while aside.exists():
                n += 1
                aside = aside.with_name(f"{rec.run_id}-dropped-{n}")
            aside.parent.mkdir(parents=True, exist_ok=True)
            run_dir.rename(aside)
            notes.append(f"run {rec.run_id} ({rec.status}) is no longer planned; its folder is "
                         f"now {aside.relative_to(study_dir)}")
    try:
        if source.resolve() != (study_dir / "study.yaml").resolve():
            _archive(study_dir, "study.yaml")
            shutil.copyfile(source, study_dir / "study.yaml")
        _archive(study_dir, "plan.json")
    except OSError as e:
        raise StorageProblem(f"cannot update {study_dir}: {e.strerror or e}") from e
    atomic_write_json(study_dir / "plan.json", plan)
    manifest.runs = runs
    manifest.study_file_sha256 = manifest_io.sha256_file(study_dir / "study.yaml")
    manifest_io.save(manifest, study_dir)
    return notes
