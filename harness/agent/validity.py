"""Validity checks on a finished run; each failed check is a named warning.

Codes (docs/methodology.md explains each): window_too_short, too_few_samples,
counter_not_advancing, counter_reset, temperature_drift, throttling, power_above_limit,
power_below_idle, persistence_mode_off, other_gpu_processes, mig_enabled,
energy_unavailable, prefill_exceeds_total, warmup_not_converged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from harness.agent.metrics import known, ratio
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.sensors.nvml import PERFORMANCE_THROTTLE_MASK, throttle_names
from harness.results.schema import ExperimentResult, Warning_

MIN_SAMPLES = 10
MAX_TEMPERATURE_DRIFT_C = 10.0
POWER_LIMIT_FACTOR = 1.1
#: phases in which the model runs (the idle phase is measured before it loads)
LOADED_PHASES = ("window", "prefill")


def _devices_info(sensor: Sensor) -> dict[str, dict[str, Any]]:
    info = sensor.provenance().get("devices") or []
    return {d["device"]: d for d in info if isinstance(d, dict) and "device" in d}


def foreign_pids(pids: list[int], own_pid: int, model_loaded: bool) -> tuple[int, bool]:
    """How many listed GPU processes are not this one, and whether that count is exact.

    In a container NVML may list host PIDs, so this process's PID can be missing from the
    list; once the model is loaded this process holds a context, so one entry is ours.
    """
    if own_pid in pids:
        return len(pids) - 1, True
    if model_loaded:
        return max(len(pids) - 1, 0), False
    return len(pids), True


def check(
    result: ExperimentResult,
    phases: Mapping[str, WindowReading],
    sensor: Sensor,
    *,
    own_pid: int | None = None,
) -> list[Warning_]:
    """Every validity warning that applies to this result and its measured phases."""
    warnings: list[Warning_] = []
    m = result.experiment.measurement
    own_pid = os.getpid() if own_pid is None else own_pid
    devices = _devices_info(sensor)

    def warn(code: str, message: str, phase: str | None = None) -> None:
        warnings.append(Warning_(code=code, message=message, phase=phase))

    if result.energy.energy_method == "unavailable":
        warn(
            "energy_unavailable",
            f"energy is unknown: {result.energy.unavailable_reason or 'no reason given'}",
        )
    if result.warmup.converged is False:
        warn(
            "warmup_not_converged",
            f"batch-latency CV {result.warmup.final_cv} did not fall below "
            f"{result.warmup.target_cv} within {result.warmup.batches} warmup batches",
        )

    for phase, reading in phases.items():
        loaded = phase in LOADED_PHASES
        if loaded and reading.duration_s < m.min_window_s:
            warn(
                "window_too_short",
                f"measured window {reading.duration_s:.2f} s is shorter than min_window_s "
                f"{m.min_window_s} s",
                phase,
            )
        if not sensor.available:
            continue
        for dev in sensor.devices:
            rows = reading.device_samples(dev)
            powers = known(rows, "power_w")
            if len(powers) < MIN_SAMPLES:
                warn(
                    "too_few_samples",
                    f"{dev}: {len(powers)} power samples in the window, fewer than {MIN_SAMPLES}",
                    phase,
                )
            temps = known(rows, "temperature_c")
            if loaded and temps and max(temps) - min(temps) > MAX_TEMPERATURE_DRIFT_C:
                warn(
                    "temperature_drift",
                    f"{dev}: temperature moved {max(temps) - min(temps):.0f} °C over the window "
                    f"({min(temps):.0f}-{max(temps):.0f} °C), more than "
                    f"{MAX_TEMPERATURE_DRIFT_C:.0f} °C",
                    phase,
                )
            masks = [int(v) for v in known(rows, "throttle_reasons")]
            hit = [v & PERFORMANCE_THROTTLE_MASK for v in masks]
            seen = 0
            for v in hit:
                seen |= v
            if loaded and seen:
                share = sum(1 for v in hit if v) / len(hit)
                warn(
                    "throttling",
                    f"{dev}: clocks held down ({', '.join(throttle_names(seen))}) in "
                    f"{share:.0%} of samples",
                    phase,
                )
            pids = reading.gpu_processes.get(dev)
            if pids:
                count, exact = foreign_pids(pids, own_pid, loaded)
                if count > 0:
                    how = "" if exact else " (this process's PID is not in NVML's list, as in a " \
                        "container PID namespace; one listed process was taken to be this one)"
                    warn(
                        "other_gpu_processes",
                        f"{dev}: {count} other process(es) on the GPU{how}",
                        phase,
                    )
        for dev in reading.counter_stalled:
            warn(
                "counter_not_advancing",
                f"{dev}: the energy counter did not advance over the window",
                phase,
            )
        for dev in reading.counter_resets:
            warn("counter_reset", f"{dev}: the energy counter was reset during the window", phase)

    window = phases.get("window")
    idle_by_dev = {d.device: d.idle_power_w for d in result.energy.devices}
    if window is not None and sensor.available:
        for dev, energy in window.energy_j.items():
            mean_w = ratio(energy, window.duration_s)
            if mean_w is None:
                continue
            limit = devices.get(dev, {}).get("power_limit_w")
            if limit and mean_w > POWER_LIMIT_FACTOR * limit:
                warn(
                    "power_above_limit",
                    f"{dev}: mean power {mean_w:.1f} W is above {POWER_LIMIT_FACTOR} x the "
                    f"power limit {limit:.0f} W",
                    "window",
                )
            idle = idle_by_dev.get(dev)
            if idle is not None and mean_w < idle:
                warn(
                    "power_below_idle",
                    f"{dev}: mean power {mean_w:.1f} W under load is below the idle power "
                    f"{idle:.1f} W",
                    "window",
                )

    for dev, info in devices.items():
        if info.get("persistence_mode") is False:
            warn(
                "persistence_mode_off",
                f"{dev}: persistence mode is off (the driver may unload between runs, resetting "
                "clocks and counters; enable it with nvidia-smi -pm 1)",
            )
        if info.get("mig_mode") is True:
            warn(
                "mig_enabled",
                f"{dev}: MIG is enabled; NVML power and energy cover the whole GPU, not the "
                "instance",
            )

    decode = result.prefill.decode_energy_j
    if decode is not None and decode < 0:
        warn(
            "prefill_exceeds_total",
            f"the prefill-only passes used more energy than the full run (decode energy "
            f"{decode:.1f} J); the split is within the measurement noise",
            "prefill",
        )
    return warnings
