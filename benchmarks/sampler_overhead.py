"""Sampler overhead: the same CPU workload with the power sampler on and off, in one run.

The workload is the agent's own: the PyTorch backend generating from the tiny random-weight
model on the CPU, a fixed number of batches per segment. Each round runs three segments, in an
order that rotates from round to round: sampler off, sampler on, and a control that is off
again. The control/off ratio is an A/A comparison: it shows how much two identical segments
differ on this machine, i.e. the noise floor the on/off ratio must be read against. It prints:
  throughput ratio  = output tokens/s with the sampler on / with it off (target >= 0.995),
                      over all segments, plus the median and range of the per-round ratios
  A/A ratio         = the same for the control segments / the off segments
  CPU-time ratio    = output tokens per CPU second of this process (all threads, the sampler
                      included) on / off: the same comparison, insensitive to other processes
                      taking the CPU, which on a shared machine swamps the wall-clock ratio
  sampler CPU s/s   = CPU time of the sampler thread (time.thread_time inside it) divided by
                      the wall time it ran
  load average      before and after, so a reader can judge how quiet the machine was

What "sampler on" samples is said in the output:
  --sensor auto (default): the harness's real sensor for --device when it can measure here
      (NVML on a GPU machine with --device cuda, RAPL where powercap is readable); otherwise
  the harness's Sampler thread (the same class the NVML and RAPL sensors use) polling four
      real procfs files per tick (/proc/stat, /proc/meminfo, /proc/loadavg, /proc/self/stat).
      That is the honest stand-in on a machine with neither NVML nor RAPL: the thread, its
      schedule and its wake-ups are the harness's; the per-tick work is file reads of a cost
      comparable to a few NVML calls, not NVML itself.

Usage: python benchmarks/sampler_overhead.py [--rounds 8] [--batches 4] [--interval-ms 100]
                                             [--device cpu|cuda] [--sensor auto|procfs]
                                             [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.agent.sensors import select_sensor
from harness.agent.sensors.base import Sampler, Sensor
from harness.agent.workload import batches, synthetic_prompts
from harness.backends.engine import create_engine
from harness.config.experiment import Experiment
from harness.models.tiny import write_tiny_model

PROC_FILES = ("/proc/stat", "/proc/meminfo", "/proc/loadavg", "/proc/self/stat")


class ProcfsProbe:
    """The harness's Sampler thread reading real procfs files every tick."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._sampler: Sampler | None = None
        self.what = (
            "harness Sampler thread polling " + ", ".join(PROC_FILES)
            + " (no NVML or RAPL sensor can measure on this machine)"
        )

    def _sample(self, tick: int) -> None:
        size = 0
        for path in PROC_FILES:
            with open(path, "rb") as fh:
                size += len(fh.read())
        self.samples.append(size)

    def begin(self, interval_ms: int) -> None:
        self._sampler = Sampler(self._sample, interval_ms, name="procfs-probe")
        self._sampler.start()

    def end(self) -> dict[str, Any]:
        assert self._sampler is not None
        self._sampler.stop()
        s, self._sampler = self._sampler, None
        return {"cpu_s": s.cpu_s or 0.0, "ticks": s.ticks, "missed": s.missed_ticks}


class SensorProbe:
    """A real harness sensor (NVML or RAPL) run as in a measured window."""

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor
        self.what = f"harness {type(sensor).__name__} ({sensor.method}) on {sensor.devices}"

    def begin(self, interval_ms: int) -> None:
        self.sensor.begin(interval_ms)

    def end(self) -> dict[str, Any]:
        reading = self.sensor.end()
        ticks = len({s.get("tick") for s in reading.samples})
        return {"cpu_s": reading.sampler_cpu_s or 0.0, "ticks": ticks,
                "missed": reading.sampler_missed_ticks}


def segment(
    backend: Any, work: list[list[list[int]]], n: int, out_tokens: int
) -> tuple[float, float, int]:
    """Wall time, process CPU time and output tokens of ``n`` batches."""
    tokens = 0
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        for timing in backend.generate(work[i % len(work)], out_tokens):
            tokens += timing.output_tokens
    return time.perf_counter() - start, time.process_time() - cpu, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds of off/on/control")
    parser.add_argument("--batches", type=int, default=4, help="batches per segment")
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sensor", default="auto", choices=["auto", "procfs"])
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny one in /tmp)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="sampler-bench-") as tmp:
        model = args.model or write_tiny_model(Path(tmp) / "tiny")
        exp = Experiment(
            model=str(model), backend="pytorch", device=args.device,
            precision="fp32" if args.device == "cpu" else "bf16", batch_size=4,
            workload={"num_prompts": 8, "input_tokens": 64, "output_tokens": 32, "seed": 1},
        )
        backend = create_engine(exp)
        backend.load(str(model))
        vocab, special = backend.vocab()
        work = batches(synthetic_prompts(exp.workload, vocab, special), exp.batch_size)
        out_tokens = exp.workload.output_tokens

        probe: ProcfsProbe | SensorProbe = ProcfsProbe()
        sensor = select_sensor(args.device, []) if args.sensor == "auto" else None
        if sensor is not None and sensor.available:
            probe = SensorProbe(sensor)
        elif sensor is not None:
            probe.what += f"; real sensor unavailable: {sensor.reason}"

        segment(backend, work, 2 * args.batches, out_tokens)  # warm up
        wall = {"off": 0.0, "on": 0.0, "ctl": 0.0}
        cpu = dict.fromkeys(wall, 0.0)
        tok = dict.fromkeys(wall, 0)
        cpu_s = 0.0
        ticks = missed = 0
        rounds: list[dict[str, tuple[float, float, int]]] = []
        states = ["off", "on", "ctl"]
        for r in range(args.rounds):
            seg: dict[str, tuple[float, float, int]] = {}
            for state in states[r % 3:] + states[: r % 3]:
                if state == "on":
                    probe.begin(args.interval_ms)
                seg[state] = segment(backend, work, args.batches, out_tokens)
                if state == "on":
                    stats = probe.end()
                    cpu_s += stats["cpu_s"]
                    ticks += stats["ticks"]
                    missed += stats["missed"]
                w, c, t = seg[state]
                wall[state] += w
                cpu[state] += c
                tok[state] += t
            rounds.append(seg)
        if sensor is not None:
            sensor.close()
        backend.unload()

    load_after = os.getloadavg()
    import torch

    def total(state: str, by: dict[str, float]) -> float:
        return tok[state] / by[state]

    def per_round(state: str, index: int) -> list[float]:
        return [(r[state][2] / r[state][index]) / (r["off"][2] / r["off"][index]) for r in rounds]

    def line(state: str, index: int, by: dict[str, float]) -> str:
        values = per_round(state, index)
        return (f"{total(state, by) / total('off', by):.4f}; per round median "
                f"{statistics.median(values):.4f}, range {min(values):.4f}-{max(values):.4f}")

    on_s = wall["on"]
    print("sampler overhead benchmark")
    print(f"  workload         PyTorch backend, tiny random Llama, {args.device}, batch 4, "
          f"64 in / 32 out tokens, {args.batches} batches per segment, {args.rounds} rounds "
          f"(off, on, control; rotating order), {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs")
    print(f"  load average     {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min)")
    print(f"  sampler on       {probe.what}")
    print(f"  interval         {args.interval_ms} ms; {ticks} ticks in {on_s:.1f} s "
          f"({ticks / on_s:.2f}/s), {missed} missed")
    for state in ("off", "on", "ctl"):
        print(f"  throughput {state:<5} {total(state, wall):.2f} output tok/s over "
              f"{wall[state]:.1f} s")
    print(f"  ratio on/off     {line('on', 0, wall)}  (target >= 0.995)")
    print(f"  A/A ctl/off      {line('ctl', 0, wall)}  (noise floor: both sampler-off)")
    print(f"  CPU-time on/off  {line('on', 1, cpu)}  (tokens per process CPU second)")
    print(f"  CPU-time A/A     {line('ctl', 1, cpu)}")
    print(f"  sampler CPU      {cpu_s / on_s:.6f} CPU s per s ({cpu_s * 1000 / max(ticks, 1):.3f} "
          f"ms per tick)")


if __name__ == "__main__":
    main()
