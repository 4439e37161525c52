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
from harness.agent.uncertainty import Budget, energy_budget, reported, total
from harness.results.energy import DeviceEnergy, HostEnergy

#: the host figures that carry a budget (``HostEnergy.uncertainty``)
HOST_FIGURES = ("energy_j", "cpu_energy_j", "dram_energy_j", "mean_power_w")
#: the host's terms in the budget of a total with the GPUs' are named ``host_<term>``
HOST_PREFIX = "host"


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


def domain_budgets(reading: WindowReading) -> dict[str, Budget]:
    """Each RAPL domain's energy budget for a GPU window (empty without a known host energy).

    As on CPU runs: the counter's resolution and the stated-accuracy gain term; and
    ``window_coverage`` for the time the host's window exceeds the GPUs' (it opens before and
    closes after them), at up to the domain's highest power.
    """
    host = reading.host
    if host is None or host.total_energy_j is None:
        return {}
    excess_s = max(host.duration_s - reading.duration_s, 0.0)
    found = {d: energy_budget(host, d, excess_s) for d in host.energy_j}
    return {d: b for d, b in found.items() if b is not None}


def host_budgets(reading: WindowReading) -> dict[str, Budget]:
    """Budgets of the host's figures (``HOST_FIGURES``) for a GPU window (methodology 3.3)."""
    domains = domain_budgets(reading)
    host = reading.host
    if not domains or host is None:
        return {}
    figures = {
        "energy_j": total(list(domains.values())),
        "cpu_energy_j": total([b for d, b in domains.items() if d.startswith("package")]),
        "dram_energy_j": total([b for d, b in domains.items() if d.startswith("dram")]),
    }
    out = {name: b for name, b in figures.items() if b is not None}
    if "energy_j" in out and host.duration_s > 0:
        out["mean_power_w"] = out["energy_j"].scaled(1.0 / host.duration_s)
    return out


def host_figures(reading: WindowReading, host_reason: str | None) -> HostEnergy | None:
    """CPU package and DRAM energy of a GPU window's host part (None: no host part)."""
    host = reading.host
    if host is None:
        return None
    total_j = host.total_energy_j
    if total_j is None:
        reason = host_reason or "; ".join(host.notes) or "the host sensor gave no energy"
        return HostEnergy(unavailable_reason=reason, window_s=host.duration_s, notes=host.notes)
    budgets = host_budgets(reading)
    domains = domain_budgets(reading)
    seconds = host.duration_s

    def value(name: str) -> float | None:
        b = budgets.get(name)
        return b.value if b is not None else None

    def domain(d: str, e: float | None) -> DeviceEnergy:
        b = domains.get(d)
        mean = b.scaled(1.0 / seconds) if b is not None and seconds > 0 else None
        return DeviceEnergy(
            device=d, energy_j=e, energy_method=host.methods.get(d),
            readout=host.readouts.get(d), mean_power_w=ratio(e, seconds),
            uncertainty=reported({"energy_j": b, "mean_power_w": mean}))

    return HostEnergy(
        energy_method=host.method,
        energy_j=total_j,
        cpu_energy_j=value("cpu_energy_j"),
        dram_energy_j=value("dram_energy_j"),
        mean_power_w=ratio(total_j, seconds),
        window_s=seconds,
        devices=[domain(d, e) for d, e in host.energy_j.items()],
        notes=host.notes,
        uncertainty=reported({name: budgets.get(name) for name in HOST_FIGURES}),
    )
