"""How planning scales: load + expand a generated study, write its plan.json, run the command.

For each size N (default 1 000, 10 000 and 100 000 experiments) it writes a study file whose
sweep has exactly N combinations (batch_size x workload.num_prompts x measurement.warmup_batches,
one cycle, execution.max_runs raised to N), then prints the best of --repeat tries of

  plan     read, validate and expand the file (``harness.config.load.plan_study``)
  write    write the plan as plan.json, as a study run does (``atomic_write_json``)
  command  ``harness study plan FILE`` from start to exit, in a new process (Python's start,
           the imports, the plan, the checks of what it names, the summary it prints)

as wall-clock and CPU seconds, and microseconds per experiment. Figures, not a test: on a
machine shared with other work, wall time varies with the load; CPU time varies less. The
command asks the Docker engine, when one answers, whether the images are built.

Usage: python benchmarks/plan_scaling.py [--sizes 1000 10000 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.config.load import plan_study
from harness.results.io import atomic_write_json

#: the second and third axes have this many values each; the first gets N / (this squared)
INNER = 10


def study_text(size: int) -> str:
    """A study of ``size`` experiments (a multiple of 100) on the CPU, one cycle."""
    if size % (INNER * INNER):
        raise SystemExit(f"--sizes: {size} is not a multiple of {INNER * INNER}")
    study = {
        "name": f"scaling-{size}",
        "experiment": {"model": "models/tiny", "backend": "pytorch", "device": "cpu",
                       "precision": "fp32"},
        "sweep": {
            "batch_size": list(range(1, size // (INNER * INNER) + 1)),
            "workload.num_prompts": [8 * (i + 1) for i in range(INNER)],
            "measurement.warmup_batches": list(range(INNER)),
        },
        "execution": {"cycles": 1, "order": "shuffled", "max_runs": size},
    }
    return yaml.safe_dump(study, sort_keys=False)


def best_of(repeat: int, work: Callable[[], Any]) -> tuple[float, float, Any]:
    """The least wall and CPU seconds of ``repeat`` calls, and the last call's result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        result = None  # the last try's objects are freed and collected outside the timing
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def command(path: Path) -> None:
    """Run ``harness study plan PATH`` to its end, as a user would (output discarded)."""
    subprocess.run([sys.executable, "-m", "harness.cli", "study", "plan", str(path)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def best_command(repeat: int, path: Path) -> tuple[float, float]:
    """The least wall and CPU seconds (the child's) of ``repeat`` runs of the command."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        command(path)
        walls.append(time.perf_counter() - wall)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return min(walls), min(cpus)


def main() -> None:
    """Print planning, plan.json and command times for each size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="tries per figure; the best is shown")
    args = parser.parse_args()

    print(f"{'experiments':>11}  {'step':<7} {'wall s':>8} {'cpu s':>8} {'us/exp (cpu)':>13}")
    with tempfile.TemporaryDirectory(prefix="plan-scaling-") as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"scaling-{size}.yaml"
            path.write_text(study_text(size), encoding="utf-8")
            wall, cpu, (_, plan) = best_of(args.repeat, lambda p=path: plan_study(p))
            assert len(plan.experiments) == size, len(plan.experiments)
            print(f"{size:>11}  {'plan':<7} {wall:>8.3f} {cpu:>8.3f} {cpu / size * 1e6:>13.1f}")
            out = Path(tmp) / "plan.json"
            wall, cpu, _ = best_of(args.repeat, lambda o=out, p=plan: atomic_write_json(o, p))
            print(f"{size:>11}  {'write':<7} {wall:>8.3f} {cpu:>8.3f} {cpu / size * 1e6:>13.1f}")
            del plan
            wall, cpu = best_command(args.repeat, path)
            print(f"{size:>11}  {'command':<7} {wall:>8.3f} {cpu:>8.3f} {cpu / size * 1e6:>13.1f}")


if __name__ == "__main__":
    main()
