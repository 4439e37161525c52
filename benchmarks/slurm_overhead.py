"""Per-run overhead of the Slurm executor against the direct (local) executor.

Runs the same tiny 2-run CPU study twice through ``harness study run``: once with the local
executor, once with ``executor: slurm`` (max_jobs 1, so runs go one at a time both ways, and
poll_s as given). Prints, each way: the study's wall time per run, the mean run time the
manifest records (the container's or process's duration_s), and what lies around it per run
(wall per run - duration); then the Slurm path's extra time per run.

Needs a Slurm cluster (scripts/ensure-slurm.sh) and, for --runner docker (the default), a
Docker engine and the harness/pytorch:cpu image (make images).

Usage: python benchmarks/slurm_overhead.py [--runner docker|local] [--poll-s 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from harness.models.tiny import write_tiny_model
from harness.results.io import read_model
from harness.results.schema import Manifest, RunRecord

STUDY = """
name: overhead-{executor}
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 4, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.2, prefill_split: false}}
sweep: {{batch_size: [1, 2]}}
execution:
  runner: {runner}
  executor: {executor}
{slurm}output_dir: {out}
"""


def run_study(root: Path, model: Path, runner: str, executor: str, poll_s: float
              ) -> tuple[float, Path, Manifest]:
    """Run the study one way; its wall time, folder and final manifest."""
    slurm = (f"  slurm: {{time: \"0:10:00\", mem: 2G, max_jobs: 1, poll_s: {poll_s}}}\n"
             if executor == "slurm" else "")
    out = root / executor
    path = root / f"{executor}.yaml"
    path.write_text(STUDY.format(executor=executor, model=model, runner=runner, slurm=slurm,
                                 out=out))
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "study", "run", str(path)],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
                          check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"{executor}: study failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    (study_dir,) = list(out.iterdir())
    return wall, study_dir, read_model(study_dir / "manifest.json", Manifest)


def start_latency(study_dir: Path, record: RunRecord) -> float:
    """Seconds from sbatch to the node side writing the run's config.json."""
    submitted = datetime.strptime(record.slurm.submitted_at if record.slurm else "",
                                  "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    written = (study_dir / "runs" / record.run_id / "config.json").stat().st_mtime
    return written - submitted.timestamp()


def main() -> None:
    """Run the study both ways and print the per-run figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=["docker", "local"], default="docker")
    parser.add_argument("--poll-s", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slurm-overhead-", dir=Path.cwd()) as tmp:
        root = Path(tmp)
        model = write_tiny_model(root / "models" / "tiny")
        figures = {}
        for executor in ("local", "slurm"):
            wall, study_dir, manifest = run_study(root, model, args.runner, executor,
                                                  args.poll_s)
            runs = len(manifest.runs)
            duration = statistics.mean(r.duration_s or 0.0 for r in manifest.runs)
            figures[executor] = wall / runs
            print(f"{executor:>5}: {runs} runs, study wall {wall:6.2f} s = {wall / runs:6.2f} s "
                  f"per run; run duration {duration:6.2f} s; around it {wall / runs - duration:6.2f}"
                  f" s per run")
        slurm_manifest = manifest
        starts = [start_latency(study_dir, r) for r in slurm_manifest.runs]
        print(f"slurm job start (sbatch to the node's config.json), mean: "
              f"{statistics.mean(starts):.2f} s")
        print(f"Slurm overhead: {figures['slurm'] - figures['local']:+.2f} s per run "
              f"(runner {args.runner}, poll_s {args.poll_s:g}, max_jobs 1)")


if __name__ == "__main__":
    main()
