"""Idle baselines: pre-load idle (no model, no context) and loaded idle (model resident, idle).

Both are windows in which this thread sleeps while the sensor's sampler records; each device's
idle power is the window's energy over its duration, with an uncertainty budget that includes
how much the window's two halves differ (docs/methodology.md, sections 1 and 2.5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.agent.metrics import known
from harness.agent.readings import Halves, halves
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.uncertainty import Budget, energy_budget, power_budget, total


@dataclass
class Baseline:
    """One idle window and the idle power it gives per device."""

    reading: WindowReading
    devices: list[str]

    def halves(self, dev: str) -> Halves | None:
        """Mean power of the window's first and second half on one device."""
        r = self.reading
        return halves(r.device_samples(dev), r.energy_j.get(dev), r.duration_s)

    def budget(self, dev: str) -> Budget | None:
        """Idle power of one device with its uncertainty (None when unknown)."""
        energy = energy_budget(self.reading, dev)
        if energy is None or self.reading.duration_s <= 0:
            return None
        return power_budget(energy, self.reading.duration_s, self.halves(dev))

    def power_w(self, dev: str) -> float | None:
        """Idle power of one device (None when unknown)."""
        b = self.budget(dev)
        return b.value if b is not None else None

    def total_budget(self) -> Budget | None:
        """Idle power summed over the devices (None when any is unknown)."""
        budgets = [self.budget(d) for d in self.devices]
        if any(b is None for b in budgets):
            return None
        return total([b for b in budgets if b is not None])

    @property
    def samples(self) -> int:
        """Power samples per device (the smallest over devices)."""
        counts = [len(known(self.reading.device_samples(d), "power_w")) for d in self.devices]
        return min(counts, default=0)


def measure_baseline(sensor: Sensor, seconds: float, interval_ms: int) -> Baseline | None:
    """An idle window of ``seconds`` (None when energy is unavailable or ``seconds`` is 0).

    This thread sleeps for the whole window; only the sensor's sampler thread wakes up.
    """
    if not sensor.available or seconds <= 0:
        return None
    sensor.begin(interval_ms)
    time.sleep(seconds)
    return Baseline(sensor.end(), list(sensor.devices))
