"""Derived metrics: latency statistics, ratios, power summaries (FLOPs: compute.py)."""

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
