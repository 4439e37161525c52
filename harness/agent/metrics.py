"""Derived metrics: latency statistics and per-token energy figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.results.schema import LatencyStats


def latency_stats(values: Sequence[float | None]) -> LatencyStats:
    """Mean and p50/p90/p99 of the known values (linear interpolation percentiles)."""
    known = np.array([v for v in values if v is not None], dtype=float)
    if known.size == 0:
        return LatencyStats()
    p50, p90, p99 = np.percentile(known, [50, 90, 99])
    return LatencyStats(
        mean_s=float(known.mean()), p50_s=float(p50), p90_s=float(p90), p99_s=float(p99),
        n=int(known.size),
    )


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample standard deviation over mean; None for fewer than two values."""
    if len(values) < 2:
        return None
    arr = np.array(values, dtype=float)
    mean = arr.mean()
    return float(arr.std(ddof=1) / mean) if mean > 0 else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def flops_estimate(
    non_embedding_params: int, input_tokens: int, output_tokens: int, requests: int,
    layers: int | None = None, hidden: int | None = None,
) -> float:
    """Analytic forward FLOPs: 2·N per token, plus attention 2·layers·context·hidden per token.

    Kaplan et al. (2020), "Scaling Laws for Neural Language Models", table 1: a forward pass
    costs about 2·N + 2·n_layer·n_ctx·d_attn FLOPs per token.
    """
    tokens = input_tokens + output_tokens
    flops = 2.0 * non_embedding_params * tokens
    if layers and hidden and requests:
        per_req_in = input_tokens / requests
        per_req_out = output_tokens / requests
        # prompt tokens attend to on average half the prompt; generated tokens to the prompt
        # plus half of what was generated so far
        ctx_in = per_req_in / 2
        ctx_out = per_req_in + per_req_out / 2
        flops += 2.0 * layers * hidden * (input_tokens * ctx_in + output_tokens * ctx_out)
    return flops
