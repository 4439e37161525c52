"""The measured window: whole passes over the batches until the window's targets are met.

The targets (docs/methodology.md, section 1, step 7): at least ``min_window_s``; on GPU also at
least ``gpu_min_window_s`` and long enough for ``min_counter_updates`` energy-counter updates at
the update period seen in an earlier window; the window ends at the first pass boundary after
``max_window_s`` whether or not the targets are met (``window_too_short`` then says so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from harness.agent.interference import HostProbe, HostSnapshot
from harness.agent.readings import counter_period_s
from harness.agent.sensors.base import Sensor, WindowReading
from harness.backends.engine import Engine, RequestTiming
from harness.config.experiment import Measurement


@dataclass(frozen=True)
class WindowTarget:
    """How long a window must last, and the cap that ends it anyway."""

    min_s: float
    counter_s: float | None
    max_s: float

    @property
    def target_s(self) -> float:
        """The length every target asks for."""
        return max(self.min_s, self.counter_s or 0.0)

    def ended_by(self, elapsed_s: float) -> str | None:
        """Why a window may end after ``elapsed_s``: its targets are met, or its cap; or None."""
        if elapsed_s >= self.target_s:
            return "target"
        if elapsed_s >= self.max_s:
            return "cap"
        return None


def window_target(m: Measurement, device: str, period_s: float | None) -> WindowTarget:
    """The targets of a window on ``device``, given the counter's update period when known."""
    if device != "cuda":
        return WindowTarget(m.min_window_s, None, m.max_window_s)
    counter_s = m.min_counter_updates * period_s if period_s and m.min_counter_updates else None
    return WindowTarget(max(m.min_window_s, m.gpu_min_window_s), counter_s, m.max_window_s)


def slowest_counter_s(readings: list[WindowReading], devices: list[str]) -> float | None:
    """The longest counter update period estimated over the readings' devices (None: unseen)."""
    periods = [counter_period_s(r.device_samples(d)) for r in readings for d in devices]
    known_periods = [p for p in periods if p is not None]
    return max(known_periods) if known_periods else None


@dataclass
class Window:
    """What one measured window produced."""

    reading: WindowReading
    requests: list[tuple[int, int, RequestTiming]]
    iterations: int
    duration_s: float
    start_unix: float
    end_unix: float
    #: time spent inside the engine's generate() calls (agent clock)
    generate_s: float = 0.0
    ended_by: str | None = None
    target: WindowTarget | None = None
    #: the duration of each generate() call, in order (agent clock)
    call_s: list[float] = field(default_factory=list)
    host: tuple[HostSnapshot, HostSnapshot] | None = field(default=None, repr=False)

    @property
    def window_s(self) -> float:
        """The sensor's window (counter edges): every figure of the window is over it."""
        return self.reading.duration_s

    @property
    def input_tokens(self) -> int:
        """Prompt tokens processed in the window."""
        return sum(r.input_tokens for _, _, r in self.requests)

    @property
    def output_tokens(self) -> int:
        """Tokens generated in the window."""
        return sum(r.output_tokens for _, _, r in self.requests)

    @property
    def request_count(self) -> float:
        """Requests the window's energy is shared by (per-request figures)."""
        return len(self.requests)


def measure_window(
    backend: Engine,
    sensor: Sensor,
    work: list[list[list[int]]],
    interval_ms: int,
    max_new_tokens: int,
    target: WindowTarget,
    host: HostProbe | None = None,
) -> Window:
    """Run whole passes over the batches, between synchronised sensor edges, until ``target``."""
    requests: list[tuple[int, int, RequestTiming]] = []
    backend.synchronize()
    host_start = host.snapshot() if host is not None else None
    start_unix = time.time()
    sensor.begin(interval_ms)
    start = time.perf_counter()
    iterations = 0
    calls: list[float] = []
    ended_by = None
    while ended_by is None:
        for b, batch in enumerate(work):
            t0 = time.perf_counter()
            timings = backend.generate(batch, max_new_tokens)
            calls.append(time.perf_counter() - t0)
            requests.extend((iterations, b, timing) for timing in timings)
        iterations += 1
        ended_by = target.ended_by(time.perf_counter() - start)
    backend.synchronize()
    duration = time.perf_counter() - start
    reading = sensor.end()
    edges = (host_start, host.snapshot()) if host is not None and host_start else None
    return Window(reading, requests, iterations, duration, start_unix, time.time(),
                  sum(calls), ended_by, target, calls, edges)
