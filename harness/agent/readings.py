"""What one window's samples say about a device: counter updates, and power in each half.

The sampled rows carry ``energy_j`` (the energy counter since the window began, where the
device has one) and ``power_w`` (the sensor's power reading) with ``t_s`` from the window's
start; docs/methodology.md (sections 1 and 2.5) says how each quantity below is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.agent.metrics import known


def counter_values(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(t_s, counter energy) of the rows where the counter was read, in time order."""
    return sorted(
        (float(r["t_s"]), float(r["energy_j"]))
        for r in rows
        if r.get("energy_j") is not None and r.get("t_s") is not None
    )


def counter_updates(rows: list[dict[str, Any]]) -> int | None:
    """How many times the counter changed between consecutive samples (None: never read).

    A lower bound of the counter's updates in the window: two updates between one pair of
    samples count once.
    """
    values = counter_values(rows)
    if len(values) < 2:
        return None
    return sum(1 for (_, a), (_, b) in zip(values, values[1:], strict=False) if b != a)


def counter_period_s(rows: list[dict[str, Any]]) -> float | None:
    """An upper estimate of the counter's update period: sampled time per observed change.

    When the counter updates faster than the sampler, every sample sees a change and the
    estimate is the sample interval, which is longer than the true period; the estimate is
    never shorter than the period by more than one update in the sampled span.
    """
    values = counter_values(rows)
    changes = counter_updates(rows)
    if not changes:
        return None
    span = values[-1][0] - values[0][0]
    return span / changes if span > 0 else None


@dataclass(frozen=True)
class Halves:
    """Mean power in the first and second half of a window, and where it came from."""

    first_w: float
    second_w: float
    source: str

    @property
    def difference(self) -> float | None:
        """|second - first| / first (None when the first half drew no power)."""
        return abs(self.second_w - self.first_w) / self.first_w if self.first_w > 0 else None


def halves(rows: list[dict[str, Any]], energy_j: float | None, duration_s: float) -> Halves | None:
    """Mean power of each half of the window: from the counter where read, else the samples.

    With the counter, the first half ends at the sample closest to the middle: its counter
    value over its time is the first half's power, the rest of the window's energy over the
    rest of its time the second's. Without it, the power readings of each half are averaged.
    """
    values = counter_values(rows)
    if energy_j is not None and duration_s > 0 and len(values) >= 3:
        t_mid, e_mid = min(values[1:-1], key=lambda v: abs(v[0] - duration_s / 2))
        if 0 < t_mid < duration_s:
            return Halves(e_mid / t_mid, (energy_j - e_mid) / (duration_s - t_mid), "counter")
    first = [float(r["power_w"]) for r in rows
             if r.get("power_w") is not None and r.get("t_s") is not None
             and float(r["t_s"]) < duration_s / 2]
    second = [float(r["power_w"]) for r in rows
              if r.get("power_w") is not None and r.get("t_s") is not None
              and float(r["t_s"]) >= duration_s / 2]
    if not first or not second:
        return None
    return Halves(sum(first) / len(first), sum(second) / len(second), "power samples")


def power_range_w(rows: list[dict[str, Any]]) -> tuple[float, float] | None:
    """The smallest and largest power reading of the rows (None without readings)."""
    powers = known(rows, "power_w")
    return (min(powers), max(powers)) if powers else None
