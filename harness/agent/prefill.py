"""Prefill/decode split: dynamic energy of prefill-only passes over the same batches.

The prefill window repeats whole passes with one new token per request, like the main window.
Its energy above loaded idle per pass, times the main window's passes, is the prefill energy;
decode energy is the main window's dynamic energy minus that. Host gaps between generate()
calls cost loaded-idle power only, so they add nothing to it. docs/methodology.md, section 2.3.
"""

from __future__ import annotations

import math

from harness.agent.baseline import Baseline
from harness.agent.interference import HostProbe
from harness.agent.metrics import coefficient_of_variation, known, ratio
from harness.agent.sensors.base import Sensor
from harness.agent.uncertainty import Budget, above_baseline, energy_budget, reported, total
from harness.agent.window import Window, WindowTarget, measure_window
from harness.backends.engine import Engine
from harness.config.experiment import Measurement
from harness.results.schema import PrefillSplit


def device_idle_share(window: Window, devices: list[str]) -> float | None:
    """1 - the mean NVML utilisation over the window's samples (None when unreadable)."""
    util = [v for d in devices for v in known(window.reading.device_samples(d),
                                               "utilization_gpu_pct")]
    return 1.0 - sum(util) / len(util) / 100.0 if util else None


def repeatability(main: Window, prefill: Window) -> float | None:
    """Relative standard uncertainty of transferring the prefill passes' cost to the main window.

    The prefill passes' mean cost and the (unseen) mean cost of the main window's prefills are
    two samples of the same calls: with the calls' coefficient of variation ``cv``, their
    difference has relative standard uncertainty ``cv * sqrt(1/n_prefill + 1/n_main)``.
    """
    cv = coefficient_of_variation(prefill.call_s)
    if cv is None or not main.call_s:
        return None
    return cv * math.sqrt(1 / len(prefill.call_s) + 1 / len(main.call_s))


def _budgets(
    main: Window, prefill: Window, dev: str, idle: Budget, scale: float
) -> tuple[Budget, Budget] | None:
    """Prefill and decode dynamic energy of one device (None when an energy is unknown)."""
    e_main = energy_budget(main.reading, dev)
    e_prefill = energy_budget(prefill.reading, dev)
    if e_main is None or e_prefill is None:
        return None
    t_prefill = prefill.window_s
    prefill_j = above_baseline(e_prefill, idle, t_prefill).scaled(scale)
    decode_j = above_baseline(e_main + e_prefill.scaled(-scale), idle,
                              main.window_s - scale * t_prefill)
    rel = repeatability(main, prefill)
    if rel is not None:  # the same amount moves between prefill and decode
        prefill_j.random["prefill_repeatability"] = rel * abs(prefill_j.value)
        decode_j.random["prefill_repeatability"] = rel * abs(prefill_j.value)
    return prefill_j, decode_j


def prefill_split(
    backend: Engine, sensor: Sensor, work: list[list[list[int]]], m: Measurement,
    main: Window, loaded: Baseline | None, target: WindowTarget, host: HostProbe | None = None,
) -> tuple[PrefillSplit, Window | None]:
    """The prefill window and the split of the main window's dynamic energy it gives."""
    if not m.prefill_split:
        return PrefillSplit(measured=False, reason="prefill_split is off"), None
    if not backend.prefill_only_pass:
        return PrefillSplit(measured=False, reason="the backend has no prefill-only pass"), None
    why = backend.prefill_interleaving(work)
    if why is not None:
        return PrefillSplit(measured=False, reason=f"unavailable: {why}"), None
    window = measure_window(backend, sensor, work, m.sample_interval_ms, 1, target, host)
    scale = main.iterations / window.iterations
    split = PrefillSplit(
        measured=True,
        prefill_window_s=window.window_s * scale,
        decode_window_s=main.window_s - window.window_s * scale,
        prefill_iterations=window.iterations,
        prefill_energy_method=window.reading.method,
        prefill_samples=min((len(known(window.reading.device_samples(d), "power_w"))
                             for d in sensor.devices), default=0),
        prefill_engine_s=window.generate_s * scale,
        host_overhead_share=max(0.0, 1.0 - window.generate_s / window.duration_s)
        if window.duration_s > 0 else None,
        device_idle_share=device_idle_share(window, sensor.devices),
    )
    if window.reading.total_energy_j is None or main.reading.total_energy_j is None:
        split.reason = "energy is unavailable, so prefill and decode energy are unknown"
        return split, window
    idle = {d: loaded.budget(d) for d in sensor.devices} if loaded is not None else {}
    parts = [_budgets(main, window, d, b, scale) for d, b in idle.items() if b is not None]
    if not idle or len(parts) != len(sensor.devices) or any(p is None for p in parts):
        split.reason = "no loaded-idle power (loaded_idle_s is 0 or unmeasured), so the " \
            "dynamic prefill and decode energy are unknown"
        return split, window
    prefill_j = total([p[0] for p in parts if p is not None])
    decode_j = total([p[1] for p in parts if p is not None])
    assert prefill_j is not None and decode_j is not None
    figures = {
        "prefill_energy_j": prefill_j,
        "decode_energy_j": decode_j,
        "prefill_j_per_input_token":
            prefill_j.scaled(1.0 / main.input_tokens) if main.input_tokens else None,
        "decode_j_per_output_token":
            decode_j.scaled(1.0 / main.output_tokens) if main.output_tokens else None,
    }
    split.basis = "dynamic"
    split.prefill_energy_j = prefill_j.value
    split.decode_energy_j = decode_j.value
    split.prefill_j_per_input_token = ratio(prefill_j.value, main.input_tokens)
    split.decode_j_per_output_token = ratio(decode_j.value, main.output_tokens)
    split.uncertainty = reported(figures)
    return split, window
