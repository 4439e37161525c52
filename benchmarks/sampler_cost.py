"""The NVML sampler's cost per tick: 8 GPUs sampled every 10 ms, NVML calls as slow as real ones.

The harness's own NvmlSensor samples simulated GPUs (harness.testing.simgpu) whose every call
sleeps ``--call-latency-ms`` first, releasing the GIL as a ctypes call into libnvidia-ml does.
For each latency it prints, per sampler tick:
  wall ms       time the sampler thread spent sampling (mean, p50, p99)
  busy share    wall time per tick / the interval: above 1, ticks are skipped
  CPU ms        the sampler thread's CPU time (time.thread_time), which includes the simulated
                library's own Python; "harness CPU ms" subtracts that, measured apart
  calls         NVML calls per tick
  missed ticks  ticks skipped because a sample overran its slot
  slept ms      what one simulated call's sleep really took (the kernel wakes a little late)
The latency is slept, so the CPU figures leave out what the driver itself spends in the kernel
during a real call; on a GPU they are higher by up to calls x the driver's share of a call.

Where the call latency comes from (no GPU was available to measure it here):
  0.36 ms  gpustat issue #76 (https://github.com/wookayin/gpustat/issues/76): calling
           pynvml's nvmlDeviceGetPowerUsage in a loop gave about 2743 calls per second on a
           Tesla K40m, i.e. 0.36 ms per call. The slower of the two published figures found.
  0.023 ms OpenKraken pull request #3 (https://github.com/davidboulay/OpenKraken/pull/3):
           four NVML queries (temperature, utilisation, memory, power) took about 0.09 ms
           together on an RTX 5080, i.e. about 0.023 ms per call.
Neither is a data-centre GPU of today (H100/H200); pass --call-latency-ms with a figure measured
on the GPU at hand (scripts/gpu_validate.py prints the mean of 1000 nvmlDeviceGetPowerUsage
calls on GPU 0).

Usage: python benchmarks/sampler_cost.py [--gpus 8] [--interval-ms 10] [--seconds 5]
                                         [--call-latency-ms 0.36,0.023]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from harness.agent import activity
from harness.agent.activity import Activity
from harness.agent.sensors.nvml import NvmlSensor, open_nvml_sensor
from harness.results.schema import GpuLibrary
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.nvml import SimulatedNvml


def simulator_cpu_per_call_s(calls: int = 20_000) -> float:
    """CPU seconds the simulated library itself spends per call (no latency)."""
    lib = SimulatedNvml(SimulatedGpus())
    lib.nvmlInit()
    handle = lib.nvmlDeviceGetHandleByIndex(0)
    start = time.thread_time()
    for _ in range(calls):
        lib.nvmlDeviceGetPowerUsage(handle)
    return (time.thread_time() - start) / calls


def slept_s(latency_ms: float, n: int = 200) -> float:
    """How long ``time.sleep`` of one call's latency really takes here."""
    start = time.perf_counter()
    for _ in range(n):
        time.sleep(latency_ms / 1000)
    return (time.perf_counter() - start) / n


def measure(gpus: int, interval_ms: int, seconds: float, latency_ms: float) -> dict[str, Any]:
    """Sample ``gpus`` simulated GPUs for ``seconds``; the cost of each tick."""
    config = SimulatedGpus(count=gpus, call_latency_ms=latency_ms)
    sensor = open_nvml_sensor([config.uuid(i) for i in range(gpus)],
                              library=GpuLibrary(kind="simulated", simulated=config))
    assert isinstance(sensor, NvmlSensor), sensor.reason
    walls: list[float] = []
    cpus: list[float] = []
    calls = [0]
    nvml = sensor._nvml
    api = nvml._api

    def counted() -> Any:
        calls[0] += 1
        return api()

    nvml._api = counted
    sample = sensor._sample

    def timed(tick: int) -> None:
        w, c = time.perf_counter(), time.thread_time()
        sample(tick)
        cpus.append(time.thread_time() - c)
        walls.append(time.perf_counter() - w)

    sensor._sample = timed  # type: ignore[method-assign]
    activity.publish(Activity.DECODE)
    sensor.begin(interval_ms)
    calls[0] = 0
    time.sleep(seconds)
    reading = sensor.end()
    activity.publish(Activity.NO_CONTEXT)
    sensor.close()
    ticks = max(len(walls) - 1, 1)  # the closing sample runs on the caller's thread
    walls, cpus = walls[:-1], cpus[:-1]
    return {
        "ticks": ticks,
        "missed": reading.sampler_missed_ticks,
        "wall_mean_ms": statistics.fmean(walls) * 1000,
        "wall_p50_ms": statistics.median(walls) * 1000,
        "wall_p99_ms": sorted(walls)[int(0.99 * (len(walls) - 1))] * 1000,
        "cpu_ms": statistics.fmean(cpus) * 1000,
        "calls": calls[0] / ticks,
    }


def main() -> None:
    """Print the sampler's cost per tick for each call latency."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval-ms", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--call-latency-ms", default="0.36,0.023")
    args = parser.parse_args()
    own_s = simulator_cpu_per_call_s()
    print(f"sampler cost per tick: {args.gpus} simulated GPUs, every {args.interval_ms} ms, "
          f"{args.seconds:.0f} s per latency")
    print(f"simulated library's own CPU per call: {own_s * 1e6:.1f} us (subtracted below)")
    head = (f"{'latency ms':>10} {'slept ms':>8} {'ticks':>6} {'missed':>6} {'calls':>6} "
            f"{'wall ms mean':>12} {'p50':>6} {'p99':>6} {'busy':>6} {'CPU ms':>7} "
            f"{'harness CPU ms':>14}")
    print(head)
    for text in args.call_latency_ms.split(","):
        latency = float(text)
        r = measure(args.gpus, args.interval_ms, args.seconds, latency)
        harness_cpu = r["cpu_ms"] - r["calls"] * own_s * 1000
        print(f"{latency:>10.3f} {slept_s(latency) * 1000:>8.3f} {r['ticks']:>6} {r['missed']:>6} "
              f"{r['calls']:>6.0f} "
              f"{r['wall_mean_ms']:>12.2f} {r['wall_p50_ms']:>6.2f} {r['wall_p99_ms']:>6.2f} "
              f"{r['wall_mean_ms'] / args.interval_ms:>6.0%} {r['cpu_ms']:>7.2f} "
              f"{harness_cpu:>14.2f}")


if __name__ == "__main__":
    main()
