"""Prefill/decode split: dynamic energy of prefill-only passes over the same batches.

The prefill window repeats whole passes with one new token per request, like the main window.
Its energy above loaded idle is the dynamic energy of its prefills; transferred to the main
window it is the prefill energy, and decode energy is the main window's dynamic energy minus
that. Host gaps between generate() calls cost loaded-idle power only, so they add nothing to it.

The transfer scales by time when the engine times tokens: the main window's time to the first
token of each call, summed, over the prefill window's (the prefill passes give the dynamic
power of prefill; the main window says how long it prefilled, so a prefill that ran slower or
faster there than in the passes is still charged what it drew). Without token times it scales
by passes (main window passes over prefill passes). docs/methodology.md, section 2.3.
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
from harness.results.energy import PrefillSplit


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


def first_token_s(window: Window) -> float | None:
    """Time from each generate() call's start to its first token, summed over the calls.

    None when a request has no token times (the engine does not time tokens).
    """
    calls: dict[tuple[int, int], float] = {}
    for iteration, batch, timing in window.requests:
        ttft = timing.ttft_s
        if ttft is None:
            return None
        key = (iteration, batch)
        calls[key] = min(calls.get(key, ttft), ttft)
    return sum(calls.values()) if calls else None


def transfer_scale(main: Window, prefill: Window) -> tuple[float, str]:
    """How much of the prefill window's dynamic energy the main window's prefills drew, and why."""
    main_s, prefill_s = first_token_s(main), first_token_s(prefill)
    if main_s is not None and prefill_s:
        return main_s / prefill_s, "first_token_time"
    return main.iterations / prefill.iterations, "passes"


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
    scale, transfer = transfer_scale(main, window)
    split = PrefillSplit(
        measured=True,
        transfer=transfer,
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
