"""Derived metrics: latency statistics, power and temperature summaries, FLOPs estimate."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

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
    """Divide, giving None when either value is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


FLOPS_FORMULA = (
    "2*N_nonemb*(input+output tokens) + 2*layers*hidden*(input*ctx_in + output*ctx_out), "
    "ctx_in = prompt/2, ctx_out = prompt + generated/2 per request "
    "(Kaplan et al. 2020, table 1; forward pass only)"
)


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


def peak_total_power_w(samples: Iterable[dict[str, Any]], devices: Sequence[str]) -> float | None:
    """Largest sum of the devices' power at one sampler tick (all devices known), in W."""
    by_tick: dict[int, dict[str, float]] = defaultdict(dict)
    for s in samples:
        if s.get("power_w") is not None and s.get("tick") is not None:
            by_tick[int(s["tick"])][str(s["device"])] = float(s["power_w"])
    totals = [sum(p.values()) for p in by_tick.values() if devices and set(devices) <= set(p)]
    return max(totals) if totals else None


def known(samples: Iterable[dict[str, Any]], key: str) -> list[float]:
    """The known (not None) values of one sample field, in sample order."""
    return [float(s[key]) for s in samples if s.get(key) is not None]
