"""The sensor contract: energy counters at window edges and a sampled timeline."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from harness.results.schema import EnergyMethod


@dataclass
class WindowReading:
    """Energy of each device over one window, and the samples taken during it."""

    method: EnergyMethod
    duration_s: float
    energy_j: dict[str, float | None]
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total_energy_j(self) -> float | None:
        """Sum over devices, or None if any device's energy is unknown."""
        values = list(self.energy_j.values())
        if not values or any(v is None for v in values):
            return None
        return float(sum(v for v in values if v is not None))


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
        return {}

    def close(self) -> None:
        """Release the sensor's resources."""
