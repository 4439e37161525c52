"""Energy figures of the measured window, per device and in total, each with its uncertainty.

Definitions in docs/methodology.md, section 2.1; budgets in section 2.5. Dynamic energy is the
window's energy above the loaded-idle baseline (model resident, engine idle).
"""

from __future__ import annotations

from typing import Any

from harness.agent.baseline import Baseline
from harness.agent.metrics import known, peak_total_power_w
from harness.agent.readings import counter_period_s, counter_updates
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.sensors.composite import HOST_PREFIX, host_budgets, host_figures
from harness.agent.uncertainty import (
    Budget,
    above_baseline,
    beside,
    energy_budget,
    peak_budget,
    reported,
    total,
)
from harness.agent.window import Window
from harness.results.energy import DeviceEnergy, Energy


def _budget_of(baseline: Baseline | None, dev: str) -> Budget | None:
    return baseline.budget(dev) if baseline is not None else None


def device_budgets(
    window: Window, dev: str, loaded: Baseline | None
) -> tuple[Budget | None, Budget | None]:
    """One device's energy and dynamic energy (above loaded idle) with their budgets."""
    energy = energy_budget(window.reading, dev)
    idle = _budget_of(loaded, dev)
    if energy is None or idle is None:
        return energy, None
    return energy, above_baseline(energy, idle, window.window_s)


def device_figures(
    window: Window, dev: str, preload: Baseline | None, loaded: Baseline | None
) -> DeviceEnergy:
    """Energy, power, temperature and memory of one device over the window."""
    reading = window.reading
    rows = reading.device_samples(dev)
    powers = known(rows, "power_w")
    temps = known(rows, "temperature_c")
    memory = known(rows, "memory_used_bytes")
    energy, dynamic = device_budgets(window, dev, loaded)
    idle, loaded_idle = _budget_of(preload, dev), _budget_of(loaded, dev)
    mean = energy.scaled(1.0 / window.window_s) if energy is not None else None
    return DeviceEnergy(
        device=dev,
        energy_j=energy.value if energy is not None else None,
        energy_method=reading.methods.get(dev),
        readout=reading.readouts.get(dev),
        gpu_processes=reading.gpu_processes.get(dev),
        idle_power_w=idle.value if idle is not None else None,
        loaded_idle_power_w=loaded_idle.value if loaded_idle is not None else None,
        dynamic_energy_j=dynamic.value if dynamic is not None else None,
        mean_power_w=mean.value if mean is not None else None,
        peak_power_w=max(powers) if powers else None,
        samples=len(powers),
        temperature_start_c=temps[0] if temps else None,
        temperature_end_c=temps[-1] if temps else None,
        temperature_max_c=max(temps) if temps else None,
        peak_memory_used_bytes=int(max(memory)) if memory else None,
        counter_updates=counter_updates(rows),
        counter_update_period_s=counter_period_s(rows),
        uncertainty=reported({
            "energy_j": energy, "dynamic_energy_j": dynamic, "idle_power_w": idle,
            "loaded_idle_power_w": loaded_idle, "mean_power_w": mean,
        }),
    )


def _common(
    window: Window, sensor: Sensor, preload: Baseline | None, loaded: Baseline | None,
    interval_ms: int | None, devices: list[DeviceEnergy],
) -> dict[str, Any]:
    """The fields every Energy has, known energy or not."""
    reading = window.reading
    notes = list(reading.notes)
    for name, base in (("idle", preload), ("loaded idle", loaded)):
        if base is not None:
            notes += [f"{name}: {n}" for n in base.reading.notes]
    if reading.sampler_missed_ticks:
        notes.append(f"the sampler missed {reading.sampler_missed_ticks} ticks")
    return {
        "devices": devices,
        "host": host_figures(reading, sensor.provenance().get("host", {}).get("reason")),
        "window_s": reading.duration_s,
        "idle_window_s": preload.reading.duration_s if preload is not None else None,
        "loaded_idle_window_s": loaded.reading.duration_s if loaded is not None else None,
        "sample_interval_ms": interval_ms if sensor.available else None,
        "sampler_cpu_s": reading.sampler_cpu_s,
        "notes": notes,
    }


def total_budget(reading: WindowReading, energy: Budget) -> Budget | None:
    """The budget of the GPUs' and the host's energy together (CPU runs: the energy's own).

    The two sensors share nothing, so their terms add in quadrature; the host's are named
    ``host_<term>`` so that the dominant one says which sensor it belongs to. None when the
    host part's energy is unknown.
    """
    if reading.host is None:
        return energy
    host = host_budgets(reading).get("energy_j")
    return beside(energy, host, HOST_PREFIX) if host is not None else None


def energy_figures(
    window: Window,
    sensor: Sensor,
    preload: Baseline | None = None,
    loaded: Baseline | None = None,
    interval_ms: int | None = None,
) -> Energy:
    """Energy over the window and the per-token, per-request and power figures."""
    reading = window.reading
    devices = [device_figures(window, dev, preload, loaded) for dev in sensor.devices]
    common = _common(window, sensor, preload, loaded, interval_ms, devices)
    budgets = [device_budgets(window, dev, loaded) for dev in sensor.devices]
    energies = [e for e, _ in budgets if e is not None]
    dynamics = [d for _, d in budgets if d is not None]
    energy = total(energies) if len(energies) == len(budgets) else None
    if reading.method == "unavailable" or reading.total_energy_j is None or energy is None:
        reason = sensor.reason or "; ".join(reading.notes) or "the sensor gave no energy"
        return Energy(energy_method="unavailable", unavailable_reason=reason, **common)
    common["samples"] = min((d.samples for d in devices), default=0)
    common["idle_samples"] = preload.samples if preload is not None else None
    common["loaded_idle_samples"] = loaded.samples if loaded is not None else None
    dynamic = total(dynamics) if len(dynamics) == len(budgets) else None
    out_tokens = window.output_tokens
    all_tokens = window.input_tokens + out_tokens
    requests = window.request_count
    peak = peak_total_power_w(reading.samples, sensor.devices)
    figures: dict[str, Budget | None] = {
        "energy_j": energy,
        "total_energy_j": total_budget(reading, energy),
        "dynamic_energy_j": dynamic,
        "idle_power_w": preload.total_budget() if preload is not None else None,
        "loaded_idle_power_w": loaded.total_budget() if loaded is not None else None,
        "mean_power_w": energy.scaled(1.0 / reading.duration_s),
        "peak_power_w": peak_budget(reading.samples, sensor.devices, peak) if peak else None,
        "j_per_output_token": energy.scaled(1.0 / out_tokens) if out_tokens else None,
        "j_per_token": energy.scaled(1.0 / all_tokens) if all_tokens else None,
        "j_per_request": energy.scaled(1.0 / requests) if requests else None,
        "wh_per_1k_requests": energy.scaled(1000 / 3600 / requests) if requests else None,
        "output_tokens_per_j": (
            energy.scaled(out_tokens / energy.value**2, out_tokens / energy.value)
            if energy.value > 0 else None
        ),
    }
    values = {name: b.value if b is not None else None for name, b in figures.items()}
    return Energy(energy_method=reading.method, readout=reading.readout,
                  uncertainty=reported(figures), **values, **common)
