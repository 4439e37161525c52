"""``harness run EXPERIMENT.yaml``: one experiment without a study, same agent and runtimes.

The experiment is checked as a study's start checks its experiments (model, prompts file,
image, GPU settings) and refused with exit code 2 before anything starts; relative paths are
read as a study's are: files it names from the experiment file's folder, a model folder from
the working folder. The run gets a fresh folder, ROOT/EXPID-YYYYmmddTHHMMSSZ (default ROOT:
results/single), never an existing one; its outcome is classified with the same failure
reasons as a study's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.datasets import DatasetFile
from harness.config.experiment import Experiment, Runner
from harness.config.gpu import device_problem
from harness.config.load import load_experiment
from harness.config.study import Execution
from harness.controller.gpucheck import gpu_problems
from harness.controller.launch import Launcher, record_attempt
from harness.controller.lifecycle import new_study_dir
from harness.controller.placement import assign_gpus
from harness.controller.preflight import check_experiments
from harness.controller.runtimes import select_runtime
from harness.controller.runtimes.base import Runtime
from harness.controller.signals import SignalWatch
from harness.errors import UserInputError
from harness.results import events
from harness.results.manifest import now_iso
from harness.results.schema import ExperimentResult, RunInfo, RunRecord

#: the study name single runs carry (in their results and container labels)
SINGLE = "single"
DEFAULT_ROOT = Path("results") / SINGLE


@dataclass
class SingleRun:
    """One experiment ready to run in its own folder, and what the user should be told first."""

    experiment: Experiment
    run_dir: Path
    runtime: Runtime
    runner_why: str
    notes: list[str]
    observer: events.Observer = events.ignore
    #: the files the experiment names, resolved from its file's folder, checked and hashed
    datasets: list[DatasetFile] = field(default_factory=list)
    #: where a relative model path is read from (the working folder, as for a study)
    model_base: Path = field(default_factory=Path.cwd)
    execution: Execution = field(default_factory=Execution)
    #: the run's result once it is done
    result: ExperimentResult | None = None

    def execute(self) -> RunRecord:
        """Run the agent once; the record says done, failed (with its reason) or interrupted."""
        stop = threading.Event()

        def pause(seconds: float) -> None:
            stop.wait(seconds)  # woken by Ctrl+C

        exp, run_dir = self.experiment, self.run_dir
        launcher = Launcher(
            self.runtime, study=SINGLE, execution=self.execution, images={}, hf_cache=None,
            base_dir=self.model_base, datasets=self.datasets, observer=self.observer, sleep=pause,
            stopping=stop.is_set,
        )
        record = RunRecord(run_id=run_dir.name, experiment_id=exp.id, cycle=1, position=0,
                           status="running", attempts=1, runner=self.runtime.name,
                           started_at=now_iso())
        info = RunInfo(study=SINGLE, experiment_id=exp.id, cycle=1, run_id=run_dir.name)
        with SignalWatch(self.runtime, self.observer, stop).installed():
            attempt = launcher.attempt(info, exp, run_dir, assign_gpus(self.execution, exp))
        record_attempt(record, attempt, stopping=stop.is_set())
        self.result = attempt.verdict.result
        return record


def prepare_experiment(
    file: Path,
    *,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    observer: events.Observer = events.ignore,
) -> SingleRun:
    """Validate and check an experiment file, choose the runner and make its run folder.

    Nothing runs yet. What would make the run fail is refused here (UserInputError naming the
    file, the field and the fix), before a folder is made, as ``study run`` refuses it.
    """
    exp = load_experiment(file)
    problem = Execution().placement_problem(exp) or device_problem(exp.gpu, exp.device, None)
    if problem is not None:
        raise UserInputError(f"{file}: {problem}")
    runtime, why = select_runtime(runner or "auto")
    model_base = Path.cwd()
    found = check_experiments([exp], runtime, origin=str(file), images={}, hf_cache=None,
                              model_base=model_base, dataset_base=Path(file).parent)
    found.errors += gpu_problems([exp], Execution(), str(file), probe_clocks=True)
    found.raise_errors(file, "experiment")
    run_dir = new_study_dir(output_dir or DEFAULT_ROOT, exp.id)
    return SingleRun(exp, run_dir, runtime, why, found.warnings, observer,
                     datasets=found.datasets, model_base=model_base)


def run_experiment(
    file: Path,
    *,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    observer: events.Observer = events.ignore,
) -> RunRecord:
    """Run one experiment file in a fresh run folder and return its record."""
    return prepare_experiment(file, runner=runner, output_dir=output_dir,
                              observer=observer).execute()
