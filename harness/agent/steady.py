"""Steady state of the measured window: its two halves' mean power, and how long it lasted.

The window is steady when the first and second half's mean power (summed over devices) differ
by at most ``steady_tolerance`` of the first; docs/methodology.md (section 2.6) says why.
"""

from __future__ import annotations

from harness.agent.readings import counter_updates, halves
from harness.agent.window import Window
from harness.config.experiment import Measurement
from harness.results.schema import SteadyState


def steady_state(window: Window, devices: list[str], m: Measurement) -> SteadyState:
    """The verdict on one window, with the halves, the targets and how the window ended."""
    reading = window.reading
    target = window.target
    updates = [counter_updates(reading.device_samples(d)) for d in devices]
    state = SteadyState(
        tolerance=m.steady_tolerance,
        target_s=target.min_s if target else None,
        counter_target_s=target.counter_s if target else None,
        max_window_s=target.max_s if target else None,
        ended_by="cap" if window.ended_by == "cap" else "target",
        counter_updates=min(u for u in updates if u is not None)
        if any(u is not None for u in updates) else None,
        min_counter_updates=m.min_counter_updates,
    )
    parts = [halves(reading.device_samples(d), reading.energy_j.get(d), reading.duration_s)
             for d in devices]
    if not devices or any(p is None for p in parts):
        state.reason = "no power or energy readings in both halves of the window"
        return state
    known = [p for p in parts if p is not None]
    first = sum(p.first_w for p in known)
    second = sum(p.second_w for p in known)
    state.first_half_power_w = first
    state.second_half_power_w = second
    state.source = ", ".join(sorted({p.source for p in known}))
    if first <= 0:
        state.reason = "the first half drew no power"
        return state
    state.difference = abs(second - first) / first
    state.verdict = "steady" if state.difference <= m.steady_tolerance else "not_steady"
    return state
