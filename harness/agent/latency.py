"""Latency figures of the measured window and the clock they come from.

Every figure is taken from ``RequestTiming``: TTFT from the first arrival, inter-token latency
between distinct arrivals (tokens delivered together are one arrival, never zero gaps), TPOT
over all tokens after the first, end-to-end from the batch's start. docs/methodology.md, 2.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.agent.metrics import latency_stats
from harness.agent.window import Window
from harness.backends.engine import RequestTiming
from harness.results.schema import Latency


def latency_summary(window: Window, per_token: bool, info: dict[str, Any] | None = None) -> Latency:
    """TTFT, inter-token latency, TPOT and end-to-end statistics over the window's requests.

    ``info`` is the engine's info: its ``timestamp_source`` (the backend's declared clock) and
    ``token_timing`` (the engine's own note on when a token is timestamped) are recorded.
    """
    return latency_of([r for _, _, r in window.requests], per_token, info)


def latency_of(timings: Sequence[RequestTiming], per_token: bool,
               info: dict[str, Any] | None = None) -> Latency:
    """The latency statistics of some requests (``latency_summary``'s figures)."""
    info = info or {}
    itl = [x for r in timings for x in r.itl_s]
    source, clock = info.get("timestamp_source"), info.get("token_timing")
    return Latency(
        ttft=latency_stats([r.ttft_s for r in timings]),
        itl=latency_stats(itl),
        tpot=latency_stats([r.tpot_s for r in timings]),
        e2e=latency_stats([r.e2e_s for r in timings]),
        per_token_timestamps=per_token,
        timestamp_source=str(source) if source is not None else None,
        clock=str(clock) if clock is not None else None,
    )
