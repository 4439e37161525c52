"""Energy and time of a fixed piece of work on one simulated GPU at each power limit.

The engine's side is replaced by fixed busy stretches (prefill then decode, as an engine
publishes them on the activity bus), so the CPU's speed does not enter: what is printed is
the simulator's own power-limit curve, which a simulated study (studies/power-limit-sim.yaml)
measures through the real protocol with the tiny model's timing noise on top. For each limit:
the wall time of the work (held back under the cap), the true energy from the simulator's
truth, and the energy relative to the uncapped run.

Usage: python benchmarks/simgpu_power_curve.py [--limits 200 250 300 450 700]
       [--exponent 3] [--prefill-s 0.1] [--decode-s 0.4] [--repeats 5]

Each figure is the median over --repeats (sleeps overshoot on a busy machine).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness.agent import activity
from harness.agent.activity import Activity
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.nvml import SimulatedNvml
from harness.testing.simgpu.truth import energy_between, read_truth


def measure(limit_w: float, exponent: float, prefill_s: float, decode_s: float,
            folder: Path) -> tuple[float, float]:
    """Wall time (s) and true energy (J) of the work at one power limit."""
    config = SimulatedGpus(count=1, clock_power_exponent=exponent)
    folder.mkdir(parents=True, exist_ok=True)
    state, truth_file = folder / f"state-{limit_w:g}", folder / f"truth-{limit_w:g}.json"
    host = SimulatedNvml(config, state_dir=state)
    host.nvmlInit()
    host.nvmlDeviceSetPowerManagementLimit(host.nvmlDeviceGetHandleByIndex(0), int(limit_w * 1000))
    host.nvmlShutdown()
    gpu = SimulatedNvml(config, state_dir=state, truth_file=truth_file,
                        engine_uuids=[config.uuid(0)])
    gpu.nvmlInit()
    activity.publish(Activity.LOADED_IDLE)
    start = time.perf_counter()
    activity.publish(Activity.PREFILL)
    time.sleep(prefill_s)
    activity.publish(Activity.DECODE)
    time.sleep(decode_s)
    activity.publish(Activity.LOADED_IDLE)
    end = time.perf_counter()
    activity.publish(Activity.NO_CONTEXT)
    gpu.nvmlShutdown()
    truth = read_truth(truth_file)
    return end - start, energy_between(truth, config.uuid(0), start, end)


def main() -> None:
    """Print the curve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", type=float, nargs="+", default=[200, 250, 300, 450, 700])
    parser.add_argument("--exponent", type=float, default=3.0)
    parser.add_argument("--prefill-s", type=float, default=0.1)
    parser.add_argument("--decode-s", type=float, default=0.4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for limit in sorted(args.limits):
            got = [measure(limit, args.exponent, args.prefill_s, args.decode_s, Path(tmp) / str(i))
                   for i in range(args.repeats)]
            rows.append((limit, statistics.median(t for t, _ in got),
                         statistics.median(e for _, e in got)))
    uncapped = rows[-1][2]
    print(f"work: {args.prefill_s:g} s prefill + {args.decode_s:g} s decode at full clock; "
          f"clock_power_exponent {args.exponent:g}; medians of {args.repeats}")
    print(f"{'limit W':>8} {'time s':>8} {'energy J':>9} {'mean W':>7} {'energy vs last':>15}")
    for limit, seconds, joules in rows:
        print(f"{limit:8.0f} {seconds:8.3f} {joules:9.1f} {joules / seconds:7.1f} "
              f"{joules / uncapped:15.3f}")


if __name__ == "__main__":
    main()
