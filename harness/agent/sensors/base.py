"""The sensor contract: energy counters at window edges and a sampled timeline."""

from __future__ import annotations

import abc
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.results.energy import EnergyMethod, Readout


@dataclass
class WindowReading:
    """Energy of each device over one window, and the samples taken during it.

    ``energy_j`` maps each measured device to its energy over the window, None when it is
    unknown (never 0 for unknown). ``samples`` holds one dict per device and sampler tick with
    the keys of ``protocol.TIMESERIES_COLUMNS`` (plus ``tick``).
    """

    method: EnergyMethod
    duration_s: float
    energy_j: dict[str, float | None]
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: energy method actually used per device (counter, or integration as a fallback)
    methods: dict[str, EnergyMethod] = field(default_factory=dict)
    #: what was read per device: its energy counter, or its integrated power samples
    readouts: dict[str, Readout] = field(default_factory=dict)
    #: the window's edges on the time.perf_counter() clock (CLOCK_MONOTONIC)
    start_s: float | None = None
    end_s: float | None = None
    #: the host's CPU and DRAM over the same window, when a composite sensor measured them
    host: WindowReading | None = None
    #: devices whose energy counter did not advance over the window
    counter_stalled: list[str] = field(default_factory=list)
    #: devices whose energy counter went backwards (reset) during the window
    counter_resets: list[str] = field(default_factory=list)
    #: each device's enforced power limit (W) as NVML read it at the window's end
    power_limits_w: dict[str, float] = field(default_factory=dict)
    #: PIDs NVML listed as compute processes per device, at the window edges (None: unknown)
    gpu_processes: dict[str, list[int] | None] = field(default_factory=dict)
    #: CPU seconds the sampler thread used during the window
    sampler_cpu_s: float | None = None
    #: sampler ticks skipped because a sample took longer than the interval
    sampler_missed_ticks: int = 0
    #: per device, the half-width of the energy error where the window's edges fall between
    #: counter reads (a window cropped out of a longer one: harness.agent.crop)
    edge_uncertainty_j: dict[str, float] = field(default_factory=dict)

    @property
    def total_energy_j(self) -> float | None:
        """Sum over devices, or None if any device's energy is unknown."""
        values = list(self.energy_j.values())
        if not values or any(v is None for v in values):
            return None
        return float(sum(v for v in values if v is not None))

    @property
    def readout(self) -> Readout | None:
        """Counter, power_integration, or mixed when devices were read differently."""
        kinds = set(self.readouts.values())
        if not kinds:
            return None
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def device_samples(self, device: str) -> list[dict[str, Any]]:
        """The samples of one device, in time order."""
        return [s for s in self.samples if s.get("device") == device]


class Sampler:
    """Calls ``sample(tick)`` every ``interval_ms`` on a daemon thread, sleeping in between.

    Ticks are scheduled against the start time, so the period does not drift; a tick that
    cannot be kept (a sample took longer than the interval) is skipped and counted. The thread
    waits on an event, so ``stop`` ends it without waiting for the next tick.
    """

    def __init__(
        self,
        sample: Callable[[int], None],
        interval_ms: int,
        *,
        clock: Callable[[], float] = time.perf_counter,
        name: str = "harness-sampler",
    ) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self._sample = sample
        self._interval_s = interval_ms / 1000.0
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._t0 = 0.0
        self.ticks = 0
        self.missed_ticks = 0
        self.cpu_s: float | None = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Start sampling now (the first sample is taken immediately)."""
        self._t0 = self._clock()
        self._thread.start()

    def stop(self) -> int:
        """Stop sampling and wait for the thread; return the next unused tick number."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.ticks

    def _run(self) -> None:
        cpu_start = time.thread_time()
        tick = 0
        slot = 0  # slots of the schedule passed, taken or skipped
        try:
            while not self._stop.is_set():
                self._sample(tick)
                tick += 1
                slot += 1
                self.ticks = tick
                now = self._clock()
                due = self._t0 + slot * self._interval_s
                if now > due:
                    # a sample overran its slot: resume at the next slot still ahead
                    skip = math.floor((now - due) / self._interval_s) + 1
                    self.missed_ticks += skip
                    slot += skip
                    due += skip * self._interval_s
                if self._stop.wait(due - now):
                    break
        except BaseException as e:  # noqa: BLE001 - kept and reported by the sensor
            self.error = e
        finally:
            self.cpu_s = time.thread_time() - cpu_start


def trapezoid_energy_j(points: list[tuple[float, float]]) -> float | None:
    """Energy from (t_s, power_w) points by the trapezoid rule; None for fewer than two."""
    if len(points) < 2:
        return None
    points = sorted(points)
    total = 0.0
    for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False):
        total += (t1 - t0) * (p0 + p1) / 2.0
    return total


class Sensor(abc.ABC):
    """Reads energy for the devices a run is assigned."""

    method: EnergyMethod = "unavailable"
    reason: str | None = None

    @property
    def available(self) -> bool:
        """True when this sensor can measure energy."""
        return self.method != "unavailable"

    @property
    def devices(self) -> list[str]:
        """Names of the measured devices."""
        return []

    @abc.abstractmethod
    def begin(self, interval_ms: int) -> None:
        """Start a window: read counters and start sampling every ``interval_ms``."""

    @abc.abstractmethod
    def end(self) -> WindowReading:
        """End the window: stop sampling, read counters, return the window's energy."""

    def provenance(self) -> dict[str, Any]:
        """What the sensor knows about the devices (names, limits, settings)."""
        return {"method": self.method, "reason": self.reason}

    def close(self) -> None:
        """Release the sensor's resources."""
