"""A sensor for machines where energy cannot be read: every energy is unknown, with why."""

from __future__ import annotations

import time

from harness.agent.sensors.base import Sensor, WindowReading


class UnavailableSensor(Sensor):
    """Energy is unavailable; the reason says why (no NVML, no GPU, no powercap...)."""

    method = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self._start = 0.0

    def begin(self, interval_ms: int) -> None:
        """Note the window start."""
        self._start = time.perf_counter()

    def end(self) -> WindowReading:
        """A window with unknown energy."""
        end = time.perf_counter()
        return WindowReading(
            method="unavailable",
            duration_s=end - self._start,
            energy_j={},
            start_s=self._start,
            end_s=end,
        )
