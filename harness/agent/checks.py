"""Validity checks of the baselines, the window's steadiness and length, and the host.

Part of ``validity.check``; each failed check is a named warning (docs/methodology.md, section
4, gives every threshold below and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.agent.metrics import known
from harness.agent.readings import counter_updates
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.uncertainty import reads_counter
from harness.results.schema import ExperimentResult, Warning_
from harness.results.wording import percent_past

#: on GPU, an idle baseline shorter than this sees too few counter updates and samples
GPU_MIN_BASELINE_S = 10.0
#: idle power above this share of the enforced power limit means the GPU was not idle
IDLE_POWER_LIMIT_SHARE = 0.4
#: pre-load idle may exceed loaded idle by this share (a CUDA context never lowers power)
PRELOAD_ABOVE_LOADED = 0.05
#: a baseline whose temperature fell by more than this was taken on a GPU still cooling
BASELINE_COOLING_C = 2.0
#: other processes' share of the machine's CPU time, or the run's run-queue wait per second
HOST_CONTENTION_SHARE = 0.25
BASELINES = {"idle": "pre-load idle", "loaded_idle": "loaded idle"}


def _short_baselines(result: ExperimentResult, phases: Mapping[str, WindowReading]) -> list[Warning_]:
    if result.experiment.device != "cuda":
        return []
    return [
        Warning_(code="baseline_too_short",
                 message=f"the {what} baseline lasted {reading.duration_s:.1f} s, shorter than "
                 f"{GPU_MIN_BASELINE_S:g} s on a GPU", phase=phase)
        for phase, what in BASELINES.items()
        if (reading := phases.get(phase)) is not None and reading.duration_s < GPU_MIN_BASELINE_S
    ]


def _hot_baselines(phases: Mapping[str, WindowReading], devices: list[str]) -> list[Warning_]:
    found = []
    for phase, what in BASELINES.items():
        reading = phases.get(phase)
        if reading is None:
            continue
        for dev in devices:
            temps = known(reading.device_samples(dev), "temperature_c")
            if len(temps) >= 2 and temps[0] - temps[-1] > BASELINE_COOLING_C:
                found.append(Warning_(
                    code="baseline_hot",
                    message=f"{dev}: the GPU cooled from {temps[0]:.0f} to {temps[-1]:.0f} °C "
                    f"during the {what} baseline (more than {BASELINE_COOLING_C:g} °C): it was "
                    "still hot from earlier work, so its idle power is overstated",
                    phase=phase,
                ))
    return found


def _idle_levels(result: ExperimentResult, info: Mapping[str, dict[str, Any]]) -> list[Warning_]:
    found = []
    for d in result.energy.devices:
        limit = info.get(d.device, {}).get("power_limit_w")
        for phase, value in (("idle", d.idle_power_w), ("loaded_idle", d.loaded_idle_power_w)):
            if limit and value is not None and value > IDLE_POWER_LIMIT_SHARE * limit:
                found.append(Warning_(
                    code="idle_power_high",
                    message=f"{d.device}: {BASELINES[phase]} power {value:.1f} W is more than "
                    f"{IDLE_POWER_LIMIT_SHARE:.0%} of the power limit {limit:.0f} W: the GPU was "
                    "not idle (another process, or clocks held high)",
                    phase=phase,
                ))
        pre, loaded = d.idle_power_w, d.loaded_idle_power_w
        if pre is not None and loaded is not None and pre > (1 + PRELOAD_ABOVE_LOADED) * loaded:
            found.append(Warning_(
                code="preload_idle_above_loaded",
                message=f"{d.device}: pre-load idle {pre:.1f} W is more than "
                f"{PRELOAD_ABOVE_LOADED:.0%} above loaded idle {loaded:.1f} W; a resident model "
                "never lowers idle power, so the pre-load baseline saw other work or a hot GPU",
                phase="idle",
            ))
    return found


def baseline_warnings(
    result: ExperimentResult, phases: Mapping[str, WindowReading],
    info: Mapping[str, dict[str, Any]],
) -> list[Warning_]:
    """Baselines too short, taken on a hot GPU, implausibly high, or in the wrong order."""
    devices = [d.device for d in result.energy.devices]
    return (_short_baselines(result, phases) + _hot_baselines(phases, devices)
            + _idle_levels(result, info))


def _counter_warnings(
    result: ExperimentResult, phases: Mapping[str, WindowReading], sensor: Sensor
) -> list[Warning_]:
    need = result.experiment.measurement.min_counter_updates
    if result.experiment.device != "cuda" or not need or not sensor.available:
        return []
    found = []
    for phase in ("window", "prefill"):
        reading = phases.get(phase)
        if reading is None:
            continue
        for dev in sensor.devices:
            seen = counter_updates(reading.device_samples(dev))
            if reads_counter(reading, dev) and seen is not None and seen < need:
                found.append(Warning_(
                    code="too_few_counter_updates",
                    message=f"{dev}: the energy counter changed {seen} times in the window, "
                    f"fewer than min_counter_updates {need}",
                    phase=phase,
                ))
    return found


def window_warnings(
    result: ExperimentResult, phases: Mapping[str, WindowReading], sensor: Sensor
) -> list[Warning_]:
    """Too few counter updates, a window not in steady state, and a contended host."""
    found = _counter_warnings(result, phases, sensor)
    steady = result.steady_state
    if (steady.verdict == "not_steady" and steady.difference is not None
            and steady.tolerance is not None and steady.difference > steady.tolerance):
        difference, tolerance = percent_past(steady.difference, steady.tolerance)
        found.append(Warning_(
            code="not_steady",
            message=f"mean power of the window's halves differs by {difference} "
            f"({steady.first_half_power_w:.1f} W, then {steady.second_half_power_w:.1f} W), "
            f"more than steady_tolerance {tolerance}",
            phase="window",
        ))
    host = result.interference
    other, wait = host.other_cpu_share, host.own_wait_share
    if (other or 0) >= HOST_CONTENTION_SHARE or (wait or 0) >= HOST_CONTENTION_SHARE:
        found.append(Warning_(
            code="host_contention",
            message=f"other processes used {_share(other)} of the machine's CPU time and the "
            f"run's threads waited {_share(wait)} of the window for a CPU (warned from "
            f"{HOST_CONTENTION_SHARE:.0%}); latency and energy may include that contention",
            phase="window",
        ))
    return found


def _share(value: float | None) -> str:
    return "an unknown share" if value is None else f"{value:.0%}"
