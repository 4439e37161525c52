"""The node side of a Slurm job: run one planned run as the local loop does, write its record.

``python -m harness.controller.slurm.node STUDY_DIR RUN_ID`` (the job script's last line). It
reads the study folder on the shared filesystem, runs the run through the same Launcher, agent
and runtime as ``harness study run`` (Docker where the node has an engine, else the local
runner, per execution.runner) on the GPUs Slurm assigned, and writes the run's record to
runs/RUN_ID/slurm-node.json. Only the controller writes manifest.json. SIGTERM (scancel, the
time limit) stops the run's container before Slurm's SIGKILL.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.config.load import plan_study
from harness.controller.gpucontrol import FileJournal
from harness.controller.launch import Launcher, record_attempt
from harness.controller.runtimes import select_runtime
from harness.controller.signals import SignalWatch
from harness.controller.slurm.job import NODE_GPU_JOURNAL, NODE_RECORD, NodeRecord
from harness.devices.library import study_library
from harness.errors import HarnessError, UserInputError
from harness.results import events
from harness.results import manifest as manifest_io
from harness.results.io import atomic_write_json
from harness.results.reasons import ExitCode
from harness.results.schema import RunInfo


def assigned_gpus(env: Mapping[str, str], need: int) -> list[int]:
    """The host GPU indices Slurm gave this job (SLURM_JOB_GPUS, else CUDA_VISIBLE_DEVICES).

    Raises UserInputError when the run needs GPUs and Slurm assigned fewer.
    """
    gpus: list[int] = []
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES"):
        text = env.get(var, "").strip()
        if text:
            try:
                gpus = [int(g) for g in text.split(",")]
            except ValueError:
                continue  # UUIDs or MIG names: not host indices
            break
    if len(gpus) < need:
        raise UserInputError(f"the run needs {need} GPUs but Slurm assigned {gpus or 'none'}; "
                             "ask for them with execution.slurm.gpus_per_run or a partition "
                             "with gres")
    return gpus[:need] if need else []


def run_node(study_dir: Path, run_id: str, env: Mapping[str, str]) -> NodeRecord:
    """Run one planned run of the study in ``study_dir`` here; its record (also written)."""
    study, plan = plan_study(study_dir / "study.yaml")
    manifest = manifest_io.load(study_dir)
    planned = next((r for r in plan.runs if r.run_id == run_id), None)
    if planned is None:
        raise UserInputError(f"{study_dir}: run {run_id} is not in the plan")
    exp = plan.experiment(planned.experiment_id)
    ex = study.execution
    runtime, _ = select_runtime(ex.runner)
    stop = threading.Event()

    def pause(seconds: float) -> None:
        stop.wait(seconds)

    base = Path(manifest.working_dir) if manifest.working_dir else Path.cwd()
    launcher = Launcher(
        runtime, study=study.name, execution=ex, images=study.images, hf_cache=study.hf_cache,
        base_dir=base, datasets=manifest.datasets, observer=events.ignore,
        sleep=pause, stopping=stop.is_set, gpu_library=study_library(ex, study_dir),
        gpu_journal=FileJournal(study_dir / "runs" / run_id / NODE_GPU_JOURNAL),
    )
    # simulated GPUs are the study's own (execution.gpus), not the node's
    gpus = (assigned_gpus(env, ex.gpus_per_run(exp)) if ex.simulated_gpus is None
            else list(ex.gpus)[: ex.gpus_per_run(exp)])
    info = RunInfo(study=study.name, experiment_id=planned.experiment_id, cycle=planned.cycle,
                   run_id=run_id)
    run_dir = study_dir / "runs" / run_id
    record = manifest.record(run_id).model_copy(deep=True)
    with SignalWatch(runtime, events.ignore, stop).installed():
        attempt = launcher.attempt(info, exp, run_dir, gpus)
    record_attempt(record, attempt, stopping=stop.is_set())
    record.runner = runtime.name
    node = NodeRecord(job_id=env.get("SLURM_JOB_ID"), node=socket.gethostname(), gpus=gpus,
                      record=record)
    atomic_write_json(run_dir / NODE_RECORD, node)
    return node


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the job script; the exit code says whether the run is done."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m harness.controller.slurm.node STUDY_DIR RUN_ID", file=sys.stderr)
        return int(ExitCode.USAGE)
    try:
        node = run_node(Path(args[0]).resolve(), args[1], os.environ)
    except HarnessError as e:
        print(f"harness node: {e}", file=sys.stderr)
        return int(ExitCode.FAILED)
    rec = node.record
    print(f"harness node: run {rec.run_id} on {node.node}: {rec.status}"
          + (f" ({rec.reason}: {rec.message})" if rec.reason else ""))
    return int(ExitCode.OK if rec.status == "done" else ExitCode.FAILED)


if __name__ == "__main__":
    sys.exit(main())
