"""Latency figures from known timestamps: TTFT, inter-token latency, TPOT, end-to-end."""

from __future__ import annotations

import pytest

from harness.agent.metrics import coefficient_of_variation, latency_stats
from harness.agent.protocol import Window, latency_summary
from harness.agent.sensors.base import WindowReading
from harness.backends.engine import RequestTiming


def timing(start: float, tokens: list[float], end: float, inputs: int = 8) -> RequestTiming:
    return RequestTiming(
        input_tokens=inputs, output_tokens=len(tokens), start_s=start, end_s=end,
        token_times_s=tokens,
    )


def test_request_timing_from_token_timestamps() -> None:
    r = timing(10.0, [10.5, 10.6, 10.8, 11.1], 11.2)
    assert r.ttft_s == pytest.approx(0.5)
    assert r.itl_s == pytest.approx([0.1, 0.2, 0.3])
    assert r.tpot_s == pytest.approx(0.2)  # (11.1 - 10.5) / 3
    assert r.e2e_s == pytest.approx(1.2)


def test_untimed_or_single_token_requests_are_unknown_not_zero() -> None:
    untimed = timing(1.0, [], 2.0)
    assert untimed.ttft_s is None and untimed.tpot_s is None and untimed.itl_s == []
    one = timing(1.0, [1.25], 1.3)
    assert one.ttft_s == pytest.approx(0.25)
    assert one.tpot_s is None and one.itl_s == []


def test_latency_stats_mean_and_interpolated_percentiles() -> None:
    stats = latency_stats([1.0, 2.0, 3.0, 4.0, None])
    assert stats.n == 4
    assert stats.mean_s == pytest.approx(2.5)
    assert stats.p50_s == pytest.approx(2.5)
    assert stats.p90_s == pytest.approx(3.7)  # linear: 1 + 0.9 * 3
    assert stats.p99_s == pytest.approx(3.97)


def test_latency_stats_of_nothing_is_unknown() -> None:
    stats = latency_stats([None, None])
    assert stats.n == 0
    assert (stats.mean_s, stats.p50_s, stats.p90_s, stats.p99_s) == (None, None, None, None)


def test_latency_summary_over_a_window() -> None:
    # a static batch of two requests: same timestamps; a second batch after it
    first = [timing(0.0, [0.2, 0.3, 0.4], 0.45) for _ in range(2)]
    second = [timing(0.5, [0.9, 1.0, 1.3], 1.35)]
    requests = [(0, 0, r) for r in first] + [(0, 1, r) for r in second]
    window = Window(
        reading=WindowReading(method="unavailable", duration_s=1.35, energy_j={}),
        requests=requests, iterations=1, duration_s=1.35, start_unix=0.0, end_unix=1.35,
    )
    lat = latency_summary(window, per_token=True)
    assert lat.per_token_timestamps is True
    assert lat.ttft.n == 3
    assert lat.ttft.mean_s == pytest.approx((0.2 + 0.2 + 0.4) / 3)
    assert lat.ttft.p50_s == pytest.approx(0.2)
    assert lat.itl.n == 6
    assert lat.itl.mean_s == pytest.approx((0.1 + 0.1) * 2 / 6 + (0.1 + 0.3) / 6)
    assert lat.tpot.n == 3
    assert lat.tpot.p50_s == pytest.approx(0.1)
    assert lat.tpot.mean_s == pytest.approx((0.1 + 0.1 + 0.2) / 3)
    assert lat.e2e.mean_s == pytest.approx((0.45 + 0.45 + 0.85) / 3)
    assert lat.e2e.p99_s == pytest.approx(0.45 + 0.98 * 0.4)
    assert window.input_tokens == 24 and window.output_tokens == 9


def test_coefficient_of_variation() -> None:
    assert coefficient_of_variation([1.0]) is None
    assert coefficient_of_variation([2.0, 2.0, 2.0]) == 0.0
    # sample standard deviation (ddof=1) over the mean
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(2**0.5 / 2)
