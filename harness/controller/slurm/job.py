"""One run's Slurm job: the files it keeps in the run folder, its script and sbatch options."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from harness.config.experiment import Experiment
from harness.config.slurm import SlurmOptions
from harness.config.study import Execution
from harness.results.schema import RunRecord

#: in the run folder: the job script (kept for reviewers), Slurm's output, the node's record
SCRIPT = "slurm-job.sh"
OUTPUT = "slurm-%j.out"
NODE_RECORD = "slurm-node.json"
#: the GPU settings a run on a node is about to change, journalled first (docs/gpu-control.md)
NODE_GPU_JOURNAL = "gpu-journal.json"


class NodeRecord(BaseModel):
    """What the node side of a job wrote when its run ended (read by the controller)."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None
    node: str
    gpus: list[int]
    record: RunRecord


def gpus_for_job(options: SlurmOptions, execution: Execution, experiment: Experiment) -> int:
    """GPUs a run's job asks for: slurm.gpus_per_run, else what the run's engine uses.

    Simulated GPUs are not the node's: their runs ask for none.
    """
    if options.gpus_per_run is not None:
        return options.gpus_per_run
    if execution.simulated_gpus is not None:
        return 0
    return experiment.gpus_per_run()


def sbatch_args(options: SlurmOptions, *, name: str, run_dir: Path, gpus: int,
                after: str | None = None) -> list[str]:
    """The sbatch options of one run's job (the script path comes last, added by the caller)."""
    args = [f"--job-name={name}", f"--output={run_dir / OUTPUT}", f"--time={options.time}",
            "--nodes=1", "--ntasks=1"]
    if options.partition:
        args.append(f"--partition={options.partition}")
    if options.account:
        args.append(f"--account={options.account}")
    if options.mem:
        args.append(f"--mem={options.mem}")
    if options.cpus_per_run:
        args.append(f"--cpus-per-task={options.cpus_per_run}")
    if gpus > 0:
        args.append(f"--gres=gpu:{gpus}")
    if after:
        args.append(f"--dependency=afterany:{after}")
    return args + list(options.extra_args)


def job_script(options: SlurmOptions, *, study_dir: Path, run_id: str) -> str:
    """The batch script: the setup lines, then the node side of the harness for this run."""
    python = options.python or sys.executable
    lines = [
        "#!/bin/bash",
        f"# harness: run {run_id} of the study in {study_dir}",
        "# The node side runs this run like the local loop does (docs/slurm.md).",
        "set -e",
        *options.setup,
        "exec " + shlex.join([python, "-m", "harness.controller.slurm.node",
                              str(study_dir), run_id]),
    ]
    return "\n".join(lines) + "\n"
