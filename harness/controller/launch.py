"""One attempt of one run: its job and config.json, the runtime, the verdict and what is kept.

Shared by the study loop and ``harness run``: the same agent, runtimes and failure reasons.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config.datasets import DatasetFile
from harness.config.experiment import Experiment
from harness.config.study import Execution
from harness.controller.datasets import files_for
from harness.controller.engine import wait_for_engine
from harness.controller.gpucontrol import GpuControl, Journal
from harness.controller.outcome import Classified, classify, keep_log, mark_done, write_error
from harness.controller.preflight import image_for, locate_model
from harness.controller.runtimes.base import RunJob, RunOutcome, Runtime
from harness.controller.thermal import cooldown, host_gpu_uuids
from harness.devices.library import SYSTEM, measures_gpus, run_library
from harness.errors import EngineUnavailable, RunFailure, StorageProblem
from harness.results.events import Observer
from harness.results.gpusettings import GpuSettingsRecord
from harness.results.io import atomic_write_json
from harness.results.manifest import now_iso
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, ImageInfo, RunInfo, RunRecord, RunSpec
from harness.secrets import Scrubber, forwarded_env


@dataclass
class Attempt:
    """What one attempt of a run produced."""

    outcome: RunOutcome
    verdict: Classified
    image: ImageInfo | None
    thermal: dict[str, Any] = field(default_factory=dict)
    #: the engine went away during the attempt and did not answer within engine_wait_s
    engine_gone: bool = False
    #: the GPU settings applied for the run and whether they were restored (gpu: set)
    gpu_settings: GpuSettingsRecord | None = None
    #: UUIDs of the run's GPUs (empty where the run measures none or NVML did not answer)
    gpu_uuids: list[str] = field(default_factory=list)


def record_attempt(record: RunRecord, attempt: Attempt, *, stopping: bool) -> None:
    """Fill a run's record from its attempt: done, failed, or interrupted (when stopping)."""
    outcome = attempt.outcome
    record.finished_at = now_iso()
    record.duration_s = outcome.duration_s
    record.exit_code = outcome.exit_code
    record.container_id = outcome.container_id
    record.image = attempt.image
    record.thermal = attempt.thermal
    record.gpu_settings = attempt.gpu_settings
    record.gpu_uuids = list(attempt.gpu_uuids)
    result, reason, message = attempt.verdict
    if result is not None:
        mark_done(record, result, record.finished_at)
        if outcome.exit_code not in (0, None):
            record.message = (f"result complete; the agent then exited with code "
                              f"{outcome.exit_code}")
        return
    record.reason = reason
    record.message = message
    record.status = ("interrupted" if stopping and reason == FailureReason.INTERRUPTED
                     else "failed")


class Launcher:
    """Starts the attempts of runs with one runtime and classifies what they left."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        study: str,
        execution: Execution,
        images: Mapping[str, str],
        hf_cache: str | None,
        base_dir: Path | None,
        datasets: Sequence[DatasetFile] = (),
        observer: Observer,
        sleep: Callable[[float], None],
        stopping: Callable[[], bool],
        models: Mapping[str, Path] | None = None,
        gpu_library: GpuLibrary = SYSTEM,
        gpu_journal: Journal | None = None,
    ) -> None:
        self.runtime = runtime
        self.models = dict(models or {})
        #: the library the host reads the GPUs through (and the runs' agents, paths aside)
        self.gpu_library = gpu_library
        #: applies and restores gpu: settings around each run, journalled (docs/gpu-control.md)
        self.gpu_control = GpuControl(gpu_library, gpu_journal)
        self.study = study
        self.execution = execution
        self.images = images
        self.hf_cache = hf_cache
        self.base_dir = base_dir
        #: the files the study names, as recorded when it began: (field, value) -> file
        self.datasets = {(d.field, d.source): d for d in datasets}
        self.observer = observer
        self.sleep = sleep
        self.stopping = stopping
        self.scrubber = Scrubber.from_environ()
        self._images: dict[str, ImageInfo | None] = {}
        #: runs whose attempt is under way (several at once with execution.max_parallel)
        self._running: set[str] = set()
        self._running_lock = threading.Lock()

    def image(self, backend: str, device: str) -> tuple[str | None, ImageInfo | None]:
        """The image tag of a run and its identity (asked of the runtime once per tag)."""
        tag = image_for(self.images, backend, device)
        if tag is None:
            return None, None
        if tag not in self._images:
            self._images[tag] = self.runtime.prepare(tag)
        return tag, self._images[tag]

    def job(self, info: RunInfo, exp: Experiment, run_dir: Path, image: str | None,
            gpus: list[int], cpus: tuple[int, ...] | None = None,
            mems: tuple[int, ...] | None = None) -> RunJob:
        """The runtime's job for one run (RunFailure when its model or a file is not found)."""
        where = locate_model(exp.model, self.hf_cache, self.base_dir, self.models)
        files = files_for(exp, self.datasets, self.base_dir or Path.cwd())
        ex = self.execution
        return RunJob(
            run_id=info.run_id, study=self.study, run_dir=run_dir, image=image,
            model_host_path=where.host_path, model_ref=where.ref, hf_cache=where.hf_cache,
            gpus=gpus, device=exp.device, timeout_s=ex.timeout_s, backend=exp.backend,
            mem_limit=ex.mem_limit, pids_limit=ex.pids_limit, env=forwarded_env(),
            datasets=files,
            gpu_library=run_library(self.gpu_library, run_dir), cpus=cpus, mems=mems,
        )

    def attempt(self, info: RunInfo, exp: Experiment, run_dir: Path, gpus: list[int],
                cpus: tuple[int, ...] | None = None,
                mems: tuple[int, ...] | None = None) -> Attempt:
        """Write config.json, run the agent (pinned to ``cpus``/``mems`` if given), classify it.

        Raises StorageProblem when the run folder cannot be written.
        """
        with self._running_lock:
            self._running.add(info.run_id)
        try:
            return self._launch(info, exp, run_dir, gpus, cpus, mems)
        finally:
            with self._running_lock:
                self._running.discard(info.run_id)

    def _launch(self, info: RunInfo, exp: Experiment, run_dir: Path, gpus: list[int],
                cpus: tuple[int, ...] | None, mems: tuple[int, ...] | None) -> Attempt:
        """Make the run's job and apply its GPU settings, run it, restore the settings."""
        job: RunJob | None = None
        image: ImageInfo | None = None
        outcome = RunOutcome(exit_code=None, duration_s=0.0, reason=FailureReason.INTERRUPTED,
                             error="interrupted before the run started")
        try:
            tag, image = self.image(exp.backend, exp.device)
            job = self.job(info, exp, run_dir, tag, gpus, cpus, mems)
        except RunFailure as e:
            outcome = RunOutcome(exit_code=None, duration_s=0.0, reason=e.reason, error=str(e))
        except EngineUnavailable as e:
            outcome = RunOutcome(exit_code=None, duration_s=0.0,
                                 reason=FailureReason.ENGINE_UNAVAILABLE, error=str(e))
        settings: GpuSettingsRecord | None = None
        if job is not None and exp.gpu.any_set and not self.stopping():
            try:
                settings = self.gpu_control.apply(info.run_id, exp.gpu, gpus)
            except RunFailure as e:
                outcome = RunOutcome(exit_code=None, duration_s=0.0, reason=e.reason,
                                     error=str(e))
                job = None
        try:
            return self._attempt(info, exp, run_dir, gpus, job, image, outcome, settings)
        finally:
            if settings is not None:
                self.gpu_control.restore(info.run_id, settings)

    def _attempt(self, info: RunInfo, exp: Experiment, run_dir: Path, gpus: list[int],
                 job: RunJob | None, image: ImageInfo | None, outcome: RunOutcome,
                 settings: GpuSettingsRecord | None) -> Attempt:
        """The attempt once its job is made and its GPU settings are applied."""
        lib = self.gpu_library
        measured = measures_gpus(exp.device, lib)
        uuids = host_gpu_uuids(gpus, library=lib) if measured else []
        spec = RunSpec(
            run=info, experiment=exp,
            model_path=self.runtime.model_path_for_agent(job) if job else exp.model,
            image=image, gpu_uuids=uuids,
            runner=self.runtime.name, model_fingerprint=self.execution.model_fingerprint,
            datasets=[d.model_copy(update={"agent_path": self.runtime.dataset_path_for_agent(d)})
                      for d in (job.datasets if job else [])],
            gpu_library=(self.runtime.gpu_library_for_agent(job)
                         if job is not None and lib.kind == "simulated" else lib),
            gpu_settings=settings,
        )
        atomic_write_json(run_dir / "config.json", spec)
        thermal: dict[str, Any] = {}
        if job is not None:
            ex = self.execution
            thermal = cooldown(exp.device, gpus, ex.cooldown_to_c, ex.cooldown_timeout_s,
                               sleep=self.sleep, library=lib)
            if not self.stopping():
                outcome = self.runtime.run(job)
        gone = outcome.reason == FailureReason.ENGINE_UNAVAILABLE and not self._engine_back(
            info.run_id, run_dir, outcome)
        verdict = classify(run_dir, outcome, interrupted=self.stopping())
        if verdict.reason == FailureReason.STORAGE_ERROR:
            raise StorageProblem(verdict.message)
        message = self.scrubber.text(verdict.message) or ""
        keep_log(run_dir, f"(no log: {message or 'none'})\n")
        self.scrubber.run_dir(run_dir)
        if verdict.reason is not None:
            write_error(run_dir, info.run_id, verdict.reason, message, self.scrubber)
        return Attempt(outcome, verdict._replace(message=message), outcome.image or image,
                       thermal, gone, settings, uuids)

    def _engine_back(self, run_id: str, run_dir: Path, outcome: RunOutcome) -> bool:
        """Wait for a lost engine (execution.engine_wait_s); True once it is back for good.

        What it left of this controller's runs is then reaped; the run's own container gives
        its exit code and log. An engine that answers and goes again (a restart under way) is
        waited for again, within the same limit.
        """
        limit_s = self.execution.engine_wait_s
        began = time.monotonic()
        while True:
            left_s = limit_s - (time.monotonic() - began)
            if not wait_for_engine(self.runtime, max(0.0, left_s), self.observer,
                                   sleep=self.sleep, stopping=self.stopping):
                return False
            try:
                self._reap_left(run_id, run_dir, outcome)
                return True
            except EngineUnavailable:
                if left_s <= 0:
                    return False

    def _reap_left(self, run_id: str, run_dir: Path, outcome: RunOutcome) -> None:
        """Reap the containers of this controller's runs in this folder that the engine kept."""
        runs = run_dir.resolve().parent
        for orphan in self.runtime.find_orphans(self.study):
            if orphan.controller_pid != os.getpid() or orphan.run_dir.parent != runs:
                continue  # another controller's, or another folder's
            with self._running_lock:
                if orphan.run_id != run_id and orphan.run_id in self._running:
                    continue  # a run in flight beside this one: its own attempt settles it
            code, log = self.runtime.reap(orphan)
            if orphan.run_id != run_id:
                continue  # an earlier run's container the engine kept from being removed
            outcome.exit_code = code
            outcome.container_id = orphan.container_id
            outcome.error = (f"{outcome.error}; once it answered again, the run's container "
                             f"had exited with code {code}")
            if log:
                keep_log(run_dir, log.decode("utf-8", "replace"))
