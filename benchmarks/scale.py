"""Study wall time with runs one at a time and two at once (cpuset-pinned): the 8-run demo.

Runs studies/demo.yaml (its settings; the tiny model written to a temporary folder) through
`harness study run` twice, with execution.max_parallel 1 and then N (default 2), and prints
each study's wall time, the sum of its runs' own durations, how many runs overlapped another,
and the speed-up. On a host with few CPUs, two pinned runs each get half of them: the gain
comes from overlapping what does not need all CPUs (container start, imports, model load,
idle baselines, gaps), and a run's own measured window may get slower (see docs/scale.md).

Usage: python benchmarks/scale.py [--runner docker|local] [--parallel 2] [--study studies/demo.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from harness.models.tiny import write_tiny_model
from harness.results.manifest import load as load_manifest

REPO = Path(__file__).resolve().parents[1]


def run_once(study: dict, folder: Path, parallel: int, runner: str) -> dict[str, float]:
    """Run the study with max_parallel ``parallel``; its wall time and what its manifest says."""
    data = {**study, "output_dir": str(folder / f"out-{parallel}")}
    data["execution"] = {**study.get("execution", {}), "max_parallel": parallel, "runner": runner}
    path = folder / f"demo-{parallel}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "study", "run", str(path)],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wall_s = time.perf_counter() - began
    if proc.returncode != 0:
        sys.exit(f"max_parallel {parallel}: the study failed:\n{proc.stdout[-3000:]}"
                 f"{proc.stderr[-3000:]}")
    (study_dir,) = (folder / f"out-{parallel}").iterdir()
    manifest = load_manifest(study_dir)
    done = [r for r in manifest.runs if r.status == "done"]
    windows = []
    for rec in done:
        result = json.loads((study_dir / "runs" / rec.run_id / "result.json").read_text())
        windows.append(result["throughput"]["output_tokens_per_s"])
    return {
        "wall_s": wall_s, "runs": len(manifest.runs), "done": len(done),
        "run_s": sum(r.duration_s or 0.0 for r in manifest.runs),
        "overlapped": sum(bool(r.overlapped_with) for r in manifest.runs),
        "mean_tok_s": sum(windows) / len(windows) if windows else float("nan"),
    }


def main() -> None:
    """Run the demo both ways and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", default="docker", choices=["docker", "local"])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "demo.yaml")
    args = parser.parse_args()
    study = yaml.safe_load(args.study.read_text())
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        folder = Path(tmp)
        study["experiment"]["model"] = str(write_tiny_model(folder / "tiny"))
        print(f"study {args.study.name} ({args.runner} runner), host CPUs "
              f"{sorted(os.sched_getaffinity(0))}")
        figures = {n: run_once(study, folder, n, args.runner) for n in (1, args.parallel)}
    for n, f in figures.items():
        print(f"max_parallel {n}: wall {f['wall_s']:.1f} s for {f['done']:.0f}/{f['runs']:.0f} runs "
              f"done; runs' own time {f['run_s']:.1f} s; {f['overlapped']:.0f} runs overlapped "
              f"another; mean output tok/s {f['mean_tok_s']:.0f}")
    one, many = figures[1]["wall_s"], figures[args.parallel]["wall_s"]
    print(f"speed-up (wall, max_parallel 1 / {args.parallel}): x{one / many:.2f}")


if __name__ == "__main__":
    main()
