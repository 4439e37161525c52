"""GPUs and the host's CPU and DRAM in one window: the GPU sensor's reading, the host's beside it.

A GPU run's energy figure is the GPUs' (the headline), but the host CPU drives the engine's
scheduler and its energy belongs in the account (Zeus's ZeusMonitor measures GPU, CPU and
DRAM in one window the same way, zeus/monitor/energy.py). The host window opens just before
the GPUs' and closes just after, so it covers the GPU window; both edges are in the reading.
"""

from __future__ import annotations

from typing import Any

from harness.agent.metrics import ratio
from harness.agent.sensors.base import Sensor, WindowReading
from harness.results.energy import DeviceEnergy, HostEnergy


class CompositeSensor(Sensor):
    """A GPU sensor whose readings carry the host sensor's reading of the same window."""

    def __init__(self, gpus: Sensor, host: Sensor) -> None:
        self.gpus = gpus
        self.host = host
        self.method = gpus.method
        self.reason = gpus.reason

    @property
    def devices(self) -> list[str]:
        """The GPUs (the headline devices); the host's domains are in ``reading.host``."""
        return self.gpus.devices

    def begin(self, interval_ms: int) -> None:
        """Open the host window, then the GPUs'."""
        self.host.begin(interval_ms)
        self.gpus.begin(interval_ms)

    def end(self) -> WindowReading:
        """Close the GPUs' window, then the host's; the GPU reading carries the host's."""
        reading = self.gpus.end()
        reading.host = self.host.end()
        return reading

    def provenance(self) -> dict[str, Any]:
        """The GPU sensor's record, with the host sensor's under ``host``."""
        return {**self.gpus.provenance(), "host": self.host.provenance()}

    def close(self) -> None:
        """Close both sensors."""
        try:
            self.gpus.close()
        finally:
            self.host.close()


def host_figures(reading: WindowReading, host_reason: str | None) -> HostEnergy | None:
    """CPU package and DRAM energy of a GPU window's host part (None: no host part)."""
    host = reading.host
    if host is None:
        return None
    total = host.total_energy_j
    if total is None:
        reason = host_reason or "; ".join(host.notes) or "the host sensor gave no energy"
        return HostEnergy(unavailable_reason=reason, window_s=host.duration_s, notes=host.notes)

    def summed(prefix: str) -> float | None:
        values = [e for d, e in host.energy_j.items() if d.startswith(prefix) and e is not None]
        return float(sum(values)) if values else None

    return HostEnergy(
        energy_method=host.method,
        energy_j=total,
        cpu_energy_j=summed("package"),
        dram_energy_j=summed("dram"),
        mean_power_w=ratio(total, host.duration_s),
        window_s=host.duration_s,
        devices=[
            DeviceEnergy(device=d, energy_j=e, energy_method=host.methods.get(d),
                         readout=host.readouts.get(d), mean_power_w=ratio(e, host.duration_s))
            for d, e in host.energy_j.items()
        ],
        notes=host.notes,
    )
