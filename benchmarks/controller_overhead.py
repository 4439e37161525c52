"""Controller overhead per run in Docker, against a bare `docker run` of the same image.

Prints, for N runs of a tiny experiment through the real DockerRuntime:
  controller time  = runtime.run() (create, start, wait, logs, remove) + result collection
  agent time       = result.json timings.total_s (the protocol inside the container)
  overhead         = controller time - agent time
and the median of N timed `docker run --rm IMAGE python -c 'import harness.agent'`, and the
ratio overhead / bare run. It also prints the in-container import time of the modules the agent
loads before measuring (torch, transformers), which is part of the overhead.

Usage: python benchmarks/controller_overhead.py [--runs 5] [--image harness/pytorch:cpu]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from harness.config.experiment import Experiment
from harness.controller.outcome import classify
from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.docker import DockerRuntime
from harness.models.tiny import write_tiny_model
from harness.results.io import atomic_write_json
from harness.results.schema import RunInfo, RunSpec


def bare_run(image: str, code: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", code],
        check=True, capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--image", default="harness/pytorch:cpu")
    args = parser.parse_args()

    runtime = DockerRuntime()
    tmp = Path(tempfile.mkdtemp(prefix="overhead-"))
    model = write_tiny_model(tmp / "model")
    exp = Experiment.model_validate({
        "model": str(model), "backend": "pytorch", "device": "cpu", "precision": "fp32",
        "batch_size": 2,
        "workload": {"num_prompts": 2, "input_tokens": 8, "output_tokens": 4},
        "measurement": {"warmup_batches": 0, "baseline_s": 0, "min_window_s": 0,
                        "prefill_split": False},
    }).resolved()

    overheads, totals, agents = [], [], []
    for i in range(args.runs):
        run_id = f"bench-{i}"
        run_dir = tmp / run_id  # a result names its run, and must sit in that run's folder
        run_dir.mkdir()
        job = RunJob(
            run_id=run_id, study="benchmark", run_dir=run_dir, image=args.image,
            model_host_path=model, model_ref=str(model), hf_cache=None, gpus=[], device="cpu",
            timeout_s=600,
        )
        spec = RunSpec(
            run=RunInfo(study="benchmark", experiment_id=exp.id, cycle=1, run_id=job.run_id),
            experiment=exp, model_path=runtime.model_path_for_agent(job), runner="docker",
        )
        atomic_write_json(run_dir / "config.json", spec)
        start = time.perf_counter()
        outcome = runtime.run(job)
        result, reason, message = classify(run_dir, outcome)
        total = time.perf_counter() - start
        if result is None:
            raise SystemExit(f"run {i} failed: {reason}: {message}")
        agent = result.timings.total_s or 0.0
        totals.append(total)
        agents.append(agent)
        overheads.append(total - agent)

    bare = [bare_run(args.image, "import harness.agent") for _ in range(args.runs)]
    imports = bare_run(
        args.image,
        "import time; t=time.perf_counter(); import torch, transformers, harness.agent.protocol; "
        "print(time.perf_counter()-t)",
    )
    med_over, med_bare = statistics.median(overheads), statistics.median(bare)
    print(f"runs: {args.runs}  image: {args.image}")
    print(f"controller time per run  median {statistics.median(totals):.3f} s")
    print(f"agent protocol time      median {statistics.median(agents):.3f} s")
    print(f"controller overhead      median {med_over:.3f} s  "
          f"(min {min(overheads):.3f}, max {max(overheads):.3f})")
    print(f"bare docker run import   median {med_bare:.3f} s  (min {min(bare):.3f}, max {max(bare):.3f})")
    print(f"ratio overhead / bare    {med_over / med_bare:.2f}")
    print(f"(one bare docker run that also imports torch+transformers+protocol: {imports:.3f} s)")


if __name__ == "__main__":
    main()
