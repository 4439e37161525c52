"""The run loop: one run after another in plan order, with gaps, timeouts and a manifest."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.config.study import Study
from harness.config.sweep import Plan, PlannedRun
from harness.controller import manifest as manifest_io
from harness.controller.images import image_tag
from harness.controller.runtimes.base import RunJob, RunOutcome, Runtime
from harness.controller.thermal import cooldown, host_gpu_uuids
from harness.errors import EnvironmentProblem, UserInputError
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


@dataclass(frozen=True)
class ModelLocation:
    """Where a model lives on the host: a folder, or a hub id in a cache."""

    ref: str
    host_path: Path | None
    hf_cache: Path | None


def default_hf_cache() -> Path:
    """The host's Hugging Face cache ($HF_HOME, else ~/.cache/huggingface)."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def locate_model(model: str, study: Study) -> ModelLocation:
    """Resolve a model reference to a host folder or a cached hub id."""
    candidate = Path(model).expanduser()
    if candidate.exists():
        return ModelLocation(model, candidate.resolve(), None)
    if model.startswith(PATH_PREFIXES):
        raise UserInputError(f"experiment.model: the folder {model!r} does not exist")
    cache = Path(study.hf_cache).expanduser() if study.hf_cache else default_hf_cache()
    return ModelLocation(model, None, cache.resolve() if cache.exists() else None)


def image_for(study: Study, backend: str, device: str) -> str:
    """The image a run of this backend and device uses (study override or default tag)."""
    return study.images.get(backend) or image_tag(backend, device)


def new_study_dir(root: Path, name: str) -> Path:
    """Create results/NAME-YYYYmmddTHHMMSSZ (never reusing an existing folder)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
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
            raise EnvironmentProblem(f"cannot create the study folder {path}: {e.strerror}") from e


def headline(result: ExperimentResult) -> dict[str, float | None]:
    """The figures shown per run and kept in the manifest."""
    return {
        "output_tokens_per_s": result.throughput.output_tokens_per_s,
        "j_per_output_token": result.energy.j_per_output_token,
        "e2e_p50_s": result.latency.e2e.p50_s,
        "ttft_p50_s": result.latency.ttft.p50_s,
    }


def classify(run_dir: Path, outcome: RunOutcome) -> tuple[ExperimentResult | None, str, str]:
    """A valid result, or the failure reason and message, from the run folder and outcome."""
    result_path = run_dir / "result.json"
    if outcome.exit_code == 0 and not outcome.timed_out and result_path.exists():
        try:
            return read_model(result_path, ExperimentResult), "done", ""
        except ValueError as e:
            return None, "result_invalid", str(e)
    if outcome.timed_out:
        return None, "timeout", f"the run exceeded timeout_s after {outcome.duration_s:.0f} s"
    if outcome.oom_killed:
        return None, "out_of_memory", "the container was killed for exceeding its memory limit"
    if outcome.reason:
        return None, outcome.reason, outcome.error or outcome.reason
    error_path = run_dir / "error.json"
    if error_path.exists():
        try:
            err = read_model(error_path, RunError)
            return None, err.reason, err.message
        except ValueError:
            pass
    if outcome.killed:
        return None, "killed", f"the agent was killed (exit code {outcome.exit_code})"
    if outcome.exit_code == 0:
        return None, "result_missing", "the agent exited 0 but wrote no result.json"
    return None, "agent_exit", f"the agent exited with code {outcome.exit_code}"


Reporter = Callable[[str, dict[str, Any]], None]


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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.study = study
        self.plan = plan
        self.dir = study_dir
        self.runtime = runtime
        self.manifest = manifest
        self.report = report or (lambda event, data: None)
        self.sleep = sleep
        self._images: dict[str, ImageInfo | None] = {}

    def save(self) -> None:
        """Rewrite the manifest atomically."""
        manifest_io.save(self.manifest, self.dir)

    def pending(self) -> list[PlannedRun]:
        """Planned runs that are not done, in plan order."""
        done = {r.run_id for r in self.manifest.runs if r.status == "done"}
        return [r for r in self.plan.runs if r.run_id not in done]

    def execute(self) -> Manifest:
        """Run every pending run; return the final manifest."""
        ex = self.study.execution
        self.manifest.state = "running"
        self.save()
        consecutive = 0
        previous: PlannedRun | None = None
        todo = self.pending()
        self.report("start", {"total": len(self.plan.runs), "todo": len(todo)})
        for planned in todo:
            if previous is not None:
                gap = ex.cycle_gap_s if planned.cycle != previous.cycle else ex.gap_s
                if gap > 0:
                    self.report("gap", {"seconds": gap})
                    self.sleep(gap)
            record = self.run_one(planned)
            previous = planned
            consecutive = consecutive + 1 if record.status == "failed" else 0
            if consecutive >= ex.max_consecutive_failures:
                self.manifest.state = "aborted"
                self.manifest.message = (
                    f"stopped after {consecutive} consecutive failed runs "
                    f"(execution.max_consecutive_failures); last reason: {record.reason}"
                )
                self.save()
                self.report("aborted", {"message": self.manifest.message})
                return self.manifest
        failed = [r for r in self.manifest.runs if r.status != "done"]
        self.manifest.state = "incomplete" if failed else "complete"
        self.manifest.message = f"{len(failed)} runs not done" if failed else None
        self.save()
        return self.manifest

    def _image(self, experiment_backend: str, device: str) -> tuple[str, ImageInfo | None]:
        tag = image_for(self.study, experiment_backend, device)
        if tag not in self._images:
            self._images[tag] = self.runtime.prepare(tag)
        return tag, self._images[tag]

    def _job(self, planned: PlannedRun, run_dir: Path, image: str) -> RunJob:
        exp = self.plan.experiment(planned.experiment_id)
        where = locate_model(exp.model, self.study)
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
            mem_limit=ex.mem_limit,
            pids_limit=ex.pids_limit,
        )

    def _fresh_run_dir(self, run_id: str, attempt: int) -> Path:
        run_dir = self.dir / "runs" / run_id
        if run_dir.exists():
            aside = self.dir / "runs" / ".attempts" / f"{run_id}-attempt{attempt - 1}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            if aside.exists():
                shutil.rmtree(aside)
            run_dir.rename(aside)
        run_dir.mkdir(parents=True)
        return run_dir

    def run_one(self, planned: PlannedRun) -> RunRecord:
        """Run one planned run and record its outcome in the manifest."""
        record = self.manifest.record(planned.run_id)
        exp = self.plan.experiment(planned.experiment_id)
        record.attempts += 1
        record.status = "running"
        record.started_at = manifest_io.now_iso()
        record.finished_at = None
        record.reason = record.message = None
        record.runner = self.runtime.name
        self.save()
        self.report("run_start", {"run": planned, "experiment": exp})

        run_dir = self._fresh_run_dir(planned.run_id, record.attempts)
        tag, image = self._image(exp.backend, exp.device)
        job = self._job(planned, run_dir, tag)
        spec = RunSpec(
            run=RunInfo(
                study=self.study.name, experiment_id=planned.experiment_id,
                cycle=planned.cycle, run_id=planned.run_id,
            ),
            experiment=exp,
            model_path=self.runtime.model_path_for_agent(job),
            image=image,
            gpu_uuids=host_gpu_uuids(self.study.execution.gpus) if exp.device == "cuda" else [],
            runner=self.runtime.name,
        )
        atomic_write_json(run_dir / "config.json", spec)
        ex = self.study.execution
        record.thermal = cooldown(
            exp.device, ex.gpus, ex.cooldown_to_c, ex.cooldown_timeout_s, sleep=self.sleep
        )
        outcome = self.runtime.run(job)
        result, reason, message = classify(run_dir, outcome)

        record.finished_at = manifest_io.now_iso()
        record.duration_s = outcome.duration_s
        record.exit_code = outcome.exit_code
        record.container_id = outcome.container_id
        record.image = outcome.image or image
        if result is not None:
            record.status = "done"
            record.agent_s = result.timings.total_s
            record.headline = headline(result)
        else:
            record.status = "failed"
            record.reason = reason
            record.message = message
            if not (run_dir / "error.json").exists():
                atomic_write_json(
                    run_dir / "error.json",
                    RunError(run_id=planned.run_id, reason=reason, message=message,
                             where="controller"),
                )
            if not (run_dir / "container.log").exists():
                atomic_write_text(run_dir / "container.log", f"(no log: {message})\n")
        self.save()
        self.report("run_end", {"run": planned, "record": record, "result": result})
        return record
