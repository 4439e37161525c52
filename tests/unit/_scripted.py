"""A scripted engine and a clocked sensor on one fake clock, for protocol tests without hardware.

The engine moves a piecewise-constant power timeline as it loads, prefills, decodes, idles and
unloads; the sensor integrates that timeline exactly (the truth) and reports what a GPU's
sensor would: an energy counter that updates on a fixed grid (so each edge read is up to one
period stale), power readings, temperature and utilisation at each sampler tick.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.agent import baseline, warmup, window
from harness.agent.interference import HostProbe
from harness.agent.sensors.base import Sensor, WindowReading
from harness.backends.engine import Engine, RequestTiming
from harness.backends.spec import BackendOptions, BackendSpec
from harness.config.experiment import Experiment
from harness.results.schema import RunInfo, RunSpec

PRELOAD_W = 60.0
LOADED_W = 90.0
PREFILL_W = 400.0
DECODE_W = 250.0


class FakeClock:
    """perf_counter/time/sleep on a clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def patch_clock(monkeypatch: pytest.MonkeyPatch, clock: FakeClock) -> None:
    """Make the protocol's timing modules use ``clock``."""
    fake = SimpleNamespace(perf_counter=clock.perf_counter, time=clock.time, sleep=clock.sleep)
    for module in (baseline, warmup, window):
        monkeypatch.setattr(module, "time", fake)


class Timeline:
    """Power in W from each change point on; ``energy`` integrates it exactly."""

    def __init__(self, start_w: float = PRELOAD_W) -> None:
        self.times = [-math.inf]
        self.watts = [start_w]

    def set(self, t: float, watts: float) -> None:
        if t == self.times[-1]:
            self.watts[-1] = watts
        else:
            self.times.append(t)
            self.watts.append(watts)

    def power(self, t: float) -> float:
        return self.watts[bisect.bisect_right(self.times, t) - 1]

    def energy(self, t0: float, t1: float) -> float:
        total = 0.0
        for i, w in enumerate(self.watts):
            a = max(self.times[i], t0)
            b = min(self.times[i + 1] if i + 1 < len(self.times) else math.inf, t1)
            if b > a:
                total += w * (b - a)
        return total


class ScriptedEngine(Engine):
    """An engine that spends scripted time in prefill and decode and moves the power timeline."""

    spec = BackendSpec(name="scripted", options=BackendOptions, engine="tests:ScriptedEngine",
                       precisions={"cpu": ("fp32",), "cuda": ("fp32",)},
                       timestamp_source="engine_step")

    def __init__(self, experiment: Experiment, clock: FakeClock, timeline: Timeline, *,
                 prefill_s: Any = 0.05, step_s: float = 0.01, sync_s: float = 0.0,
                 burst: int = 1, uuids: list[str] | None = None,
                 decode_w: Any = DECODE_W, interleaving: str | None = None) -> None:
        super().__init__(experiment)
        self.clock, self.timeline = clock, timeline
        self.prefill_s, self.step_s, self.sync_s, self.burst = prefill_s, step_s, sync_s, burst
        self.uuids, self.decode_w, self.interleaving = uuids, decode_w, interleaving
        self.log: list[str] = []
        self.busy: list[tuple[float, float, str]] = []  # (start, seconds, prefill | decode)

    def load(self, model_path: str) -> None:
        self.log.append("load")
        self.timeline.set(self.clock.now, LOADED_W)

    def unload(self) -> None:
        self.log.append("unload")
        self.timeline.set(self.clock.now, PRELOAD_W)

    def vocab(self) -> tuple[int, list[int]]:
        return 100, [0]

    def encode(self, text: str) -> list[int]:
        return [1 + ord(c) % 90 for c in text]

    def info(self) -> dict[str, Any]:
        return {"engine": "scripted", "engine_version": "0", "token_timing": "the fake clock"}

    def device_uuids(self) -> list[str] | None:
        return self.uuids

    def prefill_interleaving(self, work: list[list[list[int]]]) -> str | None:
        return self.interleaving

    def synchronize(self) -> None:
        self.clock.now += self.sync_s  # host work at loaded-idle power

    def _run(self, seconds: float, watts: float, kind: str) -> None:
        self.timeline.set(self.clock.now, watts)
        self.busy.append((self.clock.now, seconds, kind))
        self.clock.now += seconds
        self.timeline.set(self.clock.now, LOADED_W)

    def busy_s(self, kind: str, t0: float, t1: float) -> float:
        """Seconds spent in ``kind`` that started between ``t0`` and ``t1``."""
        return sum(s for start, s, k in self.busy if k == kind and t0 <= start < t1)

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        self.log.append("generate")
        start = self.clock.now
        self._run(self.prefill_s() if callable(self.prefill_s) else self.prefill_s, PREFILL_W,
                  "prefill")
        made = [self.clock.now]
        decode_w = self.decode_w(self.clock.now) if callable(self.decode_w) else self.decode_w
        for _ in range(max_new_tokens - 1):
            self._run(self.step_s, decode_w, "decode")
            made.append(self.clock.now)
        # tokens reach the agent in bursts of ``burst``: each at the time of its burst's last
        times = [made[min(len(made) - 1, (i // self.burst + 1) * self.burst - 1)]
                 for i in range(len(made))]
        return [RequestTiming(len(p), max_new_tokens, start, self.clock.now, list(times))
                for p in prompts]


class ClockedSensor(Sensor):
    """A GPU sensor over a Timeline: counter on a grid of ``period_s``, readings every tick."""

    method = "nvml_counter"

    def __init__(self, clock: FakeClock, timeline: Timeline, *, period_s: float = 0.1,
                 phase_s: float = 0.0, uuid: str = "GPU-0000aaaa-1111", limit_w: float = 700.0,
                 temperature: Any = 40.0) -> None:
        self.clock, self.timeline = clock, timeline
        self.period_s, self.phase_s = period_s, phase_s
        self.uuid, self.limit_w, self.temperature = uuid, limit_w, temperature
        self.windows: list[tuple[float, float]] = []

    @property
    def devices(self) -> list[str]:
        return ["gpu0"]

    def counter(self, t: float) -> float:
        """The counter as read at ``t``: the energy up to its last update."""
        last = math.floor((t - self.phase_s) / self.period_s) * self.period_s + self.phase_s
        return self.timeline.energy(0.0, last)

    def begin(self, interval_ms: int) -> None:
        self.interval_s = interval_ms / 1000
        self.t0 = self.clock.now

    def end(self) -> WindowReading:
        t0, t1 = self.t0, self.clock.now
        self.windows.append((t0, t1))
        start = self.counter(t0)
        rows = []
        n = int((t1 - t0) / self.interval_s)
        for tick in range(n + 1):
            t = min(t0 + tick * self.interval_s, t1)
            temp = self.temperature(t) if callable(self.temperature) else self.temperature
            busy = self.timeline.power(t) > LOADED_W
            rows.append({"tick": tick, "t_s": t - t0, "device": "gpu0",
                         "power_w": self.timeline.power(t), "energy_j": self.counter(t) - start,
                         "temperature_c": temp, "utilization_gpu_pct": 100 if busy else 0,
                         "memory_used_bytes": 2**30, "throttle_reasons": 0})
        return WindowReading(method="nvml_counter", duration_s=t1 - t0,
                             energy_j={"gpu0": self.counter(t1) - start}, samples=rows,
                             methods={"gpu0": "nvml_counter"}, gpu_processes={"gpu0": []})

    def truth(self, window: int) -> float:
        """The energy the timeline integrates over the sensor's ``window``-th window."""
        return self.timeline.energy(*self.windows[window])

    def provenance(self) -> dict[str, Any]:
        return {"sensor": "clocked", "method": self.method,
                "devices": [{"device": "gpu0", "uuid": self.uuid, "power_limit_w": self.limit_w,
                             "persistence_mode": True, "mig_mode": False}]}


def quiet_host(root: Path) -> HostProbe:
    """A probe of a machine where nothing else runs: its counters never move."""
    proc = root / "quiet-proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text("cpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0\n")
    (proc / "loadavg").write_text("0.00 0.00 0.00 1/100 1\n")
    return HostProbe(proc=proc, cgroup=root / "quiet-cgroup", pid=1)


def gpu_experiment(**measurement: Any) -> Experiment:
    """A GPU experiment of 2 batches of 2 synthetic prompts, 5 new tokens each."""
    m = {"warmup_batches": 1, "baseline_s": 10, "loaded_idle_s": 10, "sample_interval_ms": 100,
         **measurement}
    return Experiment(model="scripted-model", backend="pytorch", device="cuda",
                      precision="fp32", batch_size=2,
                      workload={"num_prompts": 4, "input_tokens": 8, "output_tokens": 5},
                      measurement=m)


def spec_for(exp: Experiment) -> RunSpec:
    """A run spec of one experiment."""
    return RunSpec(run=RunInfo(study="t", experiment_id=exp.id, cycle=1, run_id=f"{exp.id}-c1"),
                   experiment=exp, model_path=exp.model)
