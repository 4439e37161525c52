"""Validity checks on a finished run; each failed check is a named warning.

Codes (docs/methodology.md explains each): window_too_short, too_few_samples,
counter_not_advancing, counter_reset, temperature_drift, throttling, power_above_limit,
power_below_idle, persistence_mode_off, other_gpu_processes, mig_enabled, gpu_unused,
energy_unavailable, prefill_exceeds_total, warmup_not_converged, too_few_counter_updates,
not_steady, baseline_too_short, baseline_hot, idle_power_high, preload_idle_above_loaded,
host_contention (the last seven with results schema 1.1; thresholds below);
power_limit_not_held, sm_clock_not_held, memory_clock_not_held (gpu: settings, gpu_validity.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from harness.agent.checks import baseline_warnings, window_warnings
from harness.agent.gpu_validity import settings_warnings
from harness.agent.metrics import known, ratio
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.sensors.throttle import PERFORMANCE_THROTTLE_MASK, throttle_names
from harness.agent.window import window_target
from harness.config.experiment import Experiment
from harness.results.schema import ExperimentResult, Warning_
from harness.results.wording import past

MIN_SAMPLES = 10
MAX_TEMPERATURE_DRIFT_C = 10.0
POWER_LIMIT_FACTOR = 1.1
#: a measured GPU whose mean utilisation over the window is below this (percent) is unused
UNUSED_GPU_PCT = 1.0
#: phases in which the model runs (the idle phase is measured before it loads)
LOADED_PHASES = ("window", "prefill")
#: phases in which this process holds a context on the GPU
CONTEXT_PHASES = ("loaded_idle", "window", "prefill")


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
    own_pid = os.getpid() if own_pid is None else own_pid
    devices = _devices_info(sensor)
    warnings = _result_warnings(result)
    for phase, reading in phases.items():
        warnings += _phase_warnings(phase, reading, result.experiment, sensor, own_pid)
    window = phases.get("window")
    if window is not None and sensor.available:
        warnings += _power_warnings(result, window, devices)
        warnings += unused_gpu_warnings(window, sensor.devices)
        warnings += settings_warnings(result.experiment.gpu, window, devices)
    warnings += baseline_warnings(result, phases, devices)
    warnings += window_warnings(result, phases, sensor)
    warnings += _device_mode_warnings(devices)
    decode = result.prefill.decode_energy_j
    if decode is not None and decode < 0:
        warnings.append(Warning_(
            code="prefill_exceeds_total",
            message=f"the prefill-only passes used more energy than the full run (decode "
            f"energy {decode:.1f} J); the split is within the measurement noise",
            phase="prefill",
        ))
    return warnings


def _result_warnings(result: ExperimentResult) -> list[Warning_]:
    """Energy that is unknown, and a warmup that did not converge."""
    found = []
    if result.energy.energy_method == "unavailable":
        found.append(Warning_(
            code="energy_unavailable",
            message=f"energy is unknown: {result.energy.unavailable_reason or 'no reason given'}",
        ))
    if result.warmup.converged is False:
        found.append(Warning_(
            code="warmup_not_converged",
            message=f"batch-latency CV {result.warmup.final_cv} did not fall below "
            f"{result.warmup.target_cv} within {result.warmup.batches} warmup batches",
        ))
    return found


def _phase_warnings(
    phase: str, reading: WindowReading, exp: Experiment, sensor: Sensor, own_pid: int
) -> list[Warning_]:
    """A phase's window length, each device's samples, and its energy counters."""
    found = []
    loaded = phase in LOADED_PHASES
    target = window_target(exp.measurement, exp.device, None).min_s
    if loaded and reading.duration_s < target:
        found.append(Warning_(
            code="window_too_short",
            message=f"measured window {reading.duration_s:.2f} s is shorter than its target "
            f"{target:g} s (min_window_s{', gpu_min_window_s' if exp.device == 'cuda' else ''})",
            phase=phase,
        ))
    if not sensor.available:
        return found
    for dev in sensor.devices:
        found += _device_warnings(dev, phase, reading, loaded, own_pid)
    counters = {
        "counter_not_advancing": (reading.counter_stalled, "did not advance over the window"),
        "counter_reset": (reading.counter_resets, "was reset during the window"),
    }
    found += [
        Warning_(code=code, message=f"{dev}: the energy counter {what}", phase=phase)
        for code, (devs, what) in counters.items()
        for dev in devs
    ]
    return found


def _device_warnings(
    dev: str, phase: str, reading: WindowReading, loaded: bool, own_pid: int
) -> list[Warning_]:
    """One device in one phase: samples, temperature drift, throttling, other processes."""
    found = []
    rows = reading.device_samples(dev)
    powers = known(rows, "power_w")
    if len(powers) < MIN_SAMPLES:
        found.append(Warning_(
            code="too_few_samples",
            message=f"{dev}: {len(powers)} power samples in the window, fewer than {MIN_SAMPLES}",
            phase=phase,
        ))
    temps = known(rows, "temperature_c")
    if loaded and temps and max(temps) - min(temps) > MAX_TEMPERATURE_DRIFT_C:
        drift, limit = past(max(temps) - min(temps), MAX_TEMPERATURE_DRIFT_C)
        found.append(Warning_(
            code="temperature_drift",
            message=f"{dev}: temperature moved {drift} °C over the window "
            f"({min(temps):g}-{max(temps):g} °C), more than {limit} °C",
            phase=phase,
        ))
    hit = [int(v) & PERFORMANCE_THROTTLE_MASK for v in known(rows, "throttle_reasons")]
    seen = 0
    for v in hit:
        seen |= v
    if loaded and seen:
        share = sum(1 for v in hit if v) / len(hit)
        found.append(Warning_(
            code="throttling",
            message=f"{dev}: clocks held down ({', '.join(throttle_names(seen))}) in "
            f"{share:.0%} of samples",
            phase=phase,
        ))
    pids = reading.gpu_processes.get(dev)
    if pids:
        count, exact = foreign_pids(pids, own_pid, phase in CONTEXT_PHASES)
        if count > 0:
            how = "" if exact else " (this process's PID is not in NVML's list, as in a " \
                "container PID namespace; one listed process was taken to be this one)"
            found.append(Warning_(
                code="other_gpu_processes",
                message=f"{dev}: {count} other process(es) on the GPU{how}",
                phase=phase,
            ))
    return found


def _power_warnings(
    result: ExperimentResult, window: WindowReading, devices: dict[str, dict[str, Any]]
) -> list[Warning_]:
    """Mean power in the measured window above the power limit or below idle power."""
    found = []
    idle_by_dev = {d.device: d.loaded_idle_power_w if d.loaded_idle_power_w is not None
                   else d.idle_power_w for d in result.energy.devices}
    for dev, energy in window.energy_j.items():
        mean_w = ratio(energy, window.duration_s)
        if mean_w is None:
            continue
        limit = devices.get(dev, {}).get("power_limit_w")
        if limit and mean_w > POWER_LIMIT_FACTOR * limit:
            found.append(Warning_(
                code="power_above_limit",
                message=f"{dev}: mean power {mean_w:.1f} W is above {POWER_LIMIT_FACTOR} x the "
                f"power limit {limit:.0f} W",
                phase="window",
            ))
        idle = idle_by_dev.get(dev)
        if idle is not None and mean_w < idle:
            found.append(Warning_(
                code="power_below_idle",
                message=f"{dev}: mean power {mean_w:.1f} W under load is below the idle power "
                f"{idle:.1f} W",
                phase="window",
            ))
    return found


def _device_mode_warnings(devices: dict[str, dict[str, Any]]) -> list[Warning_]:
    """GPUs without persistence mode, and GPUs split by MIG."""
    found = []
    for dev, info in devices.items():
        if info.get("persistence_mode") is False:
            found.append(Warning_(
                code="persistence_mode_off",
                message=f"{dev}: persistence mode is off (the driver may unload between runs, "
                "resetting clocks and counters; enable it with nvidia-smi -pm 1)",
            ))
        if info.get("mig_mode") is True:
            found.append(Warning_(
                code="mig_enabled",
                message=f"{dev}: MIG is enabled; NVML power and energy cover the whole GPU, not "
                "the instance",
            ))
    return found


def unused_gpu_warnings(window: WindowReading, devices: list[str]) -> list[Warning_]:
    """Measured GPUs at about 0 % utilisation over the window: the engine does not use them."""
    found = []
    for dev in devices:
        util = known(window.device_samples(dev), "utilization_gpu_pct")
        if util and sum(util) / len(util) < UNUSED_GPU_PCT:
            found.append(Warning_(
                code="gpu_unused",
                message=f"{dev}: utilisation {sum(util) / len(util):.1f} % over the window; the "
                "engine does not seem to compute on this GPU, yet its energy is counted",
                phase="window",
            ))
    return found
