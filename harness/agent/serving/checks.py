"""Serving mode's verdict on its window and its named warnings (docs/serving.md, section 6).

- ``no_steady_state``: the load had no steady window by the rule (too few requests for the
  engine's batch limit); the figures cover the whole load, ramp-up and drain included;
- ``throughput_not_steady``: the window's halves' output-token rates differ by more than
  ``measurement.steady_tolerance``;
- ``load_generator_behind``: with a request rate, requests went out more than
  ``SEND_RATE_TOLERANCE`` slower than asked (a concurrency cap, or a generator that could not
  keep up: ``send_lag_p99_s`` says which).
"""

from __future__ import annotations

from harness.results.schema import ExperimentResult, SteadyState, Warning_
from harness.results.serving import ServingResult
from harness.results.wording import percent_past

#: the achieved send rate may fall this far below the target before a warning
SEND_RATE_TOLERANCE = 0.02


def steady_verdict(state: SteadyState, serving: ServingResult) -> SteadyState:
    """The window's verdict: a window by the rule, steady throughput, and steady power if read."""
    tolerance = state.tolerance or 0.0
    why = []
    if not serving.window_found:
        why.append(f"no steady window ({serving.window_reason}); the figures cover the whole load")
    diff = serving.throughput_difference
    if diff is not None and diff > tolerance:
        why.append(f"output-token rate of the window's halves differs by {diff:.1%}")
    if state.verdict == "not_steady":
        why.append("mean power of the window's halves differs by "
                   f"{state.difference:.1%}" if state.difference is not None else "power")
    if why:
        return state.model_copy(update={"verdict": "not_steady", "reason": "; ".join(why)})
    if diff is None:
        return state
    source = ", ".join(filter(None, [state.source, "output-token rate"]))
    return state.model_copy(update={"verdict": "steady", "source": source})


def serving_warnings(result: ExperimentResult) -> list[Warning_]:
    """The serving run's own warnings (the offline checks run too)."""
    serving = result.serving
    if serving is None:
        return []
    found = []
    if not serving.window_found:
        found.append(Warning_(
            code="no_steady_state",
            message=f"no steady window: {serving.window_reason}; energy, throughput and tokens "
            "cover the whole load, ramp-up and drain included (send many more requests than "
            "the engine's batch limit B, at least B + 2)", phase="window"))
    diff, tolerance = serving.throughput_difference, result.steady_state.tolerance
    if diff is not None and tolerance is not None and diff > tolerance:
        shown, limit = percent_past(diff, tolerance)
        found.append(Warning_(
            code="throughput_not_steady",
            message=f"output tokens/s of the window's halves differ by {shown} "
            f"({serving.throughput_first_half:.1f}, then {serving.throughput_second_half:.1f}), "
            f"more than steady_tolerance {limit}", phase="window"))
    target, achieved = serving.target_request_rate, serving.achieved_request_rate
    if target and achieved is not None and achieved < (1 - SEND_RATE_TOLERANCE) * target:
        lag = serving.send_lag_p99_s
        found.append(Warning_(
            code="load_generator_behind",
            message=f"requests went out at {achieved:.3g}/s against the {target:.3g}/s asked "
            f"(send lag p99 {lag if lag is not None else float('nan'):.3g} s"
            f"{', concurrency ' + str(serving.concurrency) if serving.concurrency else ''})",
            phase="window"))
    return found
