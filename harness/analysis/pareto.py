"""Pareto fronts over experiment means: the configurations no other one beats on both axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from harness.analysis.stats import LABELS, param_columns

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class FrontSpec:
    """Two metrics and which way is better on each."""

    name: str
    x: str
    x_better: Direction
    y: str
    y_better: Direction

    @property
    def title(self) -> str:
        """A readable title, units included."""
        return f"{LABELS.get(self.y, self.y)} vs {LABELS.get(self.x, self.x)}"


ENERGY_FRONTS = (
    FrontSpec("energy_vs_throughput", "output_tokens_per_s", "max", "j_per_output_token", "min"),
    FrontSpec("energy_vs_latency_p90", "e2e_p90_s", "min", "j_per_output_token", "min"),
)
#: serving studies: the latency-energy trade-off per request
SERVING_FRONTS = (
    FrontSpec("serving_energy_vs_ttft_p90", "ttft_p90_s", "min", "j_per_request", "min"),
    FrontSpec("serving_energy_vs_tpot_p90", "tpot_p90_s", "min", "j_per_request", "min"),
)
FALLBACK_FRONT = FrontSpec(
    "throughput_vs_latency_p90", "e2e_p90_s", "min", "output_tokens_per_s", "max"
)
PARETO_COLUMNS = [
    "front", "experiment_id", "x_metric", "x_value", "y_metric", "y_value", "on_front",
]


@dataclass
class Front:
    """One front: its spec, every experiment's point, and a note when it is a fallback."""

    spec: FrontSpec
    points: pd.DataFrame  # experiment_id, param.*, x_value, y_value, on_front
    note: str | None = None


def non_dominated(x: np.ndarray, y: np.ndarray, x_better: Direction, y_better: Direction) -> np.ndarray:
    """A mask of the points that no other point beats on one axis without losing on the other."""
    xs = -x if x_better == "max" else x
    ys = -y if y_better == "max" else y
    mask = np.ones(len(xs), dtype=bool)
    for i in range(len(xs)):
        no_worse = (xs <= xs[i]) & (ys <= ys[i])
        better = (xs < xs[i]) | (ys < ys[i])
        mask[i] = not np.any(no_worse & better)
    return mask


def front(summary: pd.DataFrame, spec: FrontSpec, note: str | None = None) -> Front:
    """The front of one pair of metrics over the experiments' means (unknown means left out)."""
    cols = ["experiment_id", *param_columns(summary)]
    xcol, ycol = f"{spec.x}_mean", f"{spec.y}_mean"
    if xcol not in summary.columns or ycol not in summary.columns:
        points = pd.DataFrame(columns=[*cols, "x_value", "y_value", "on_front"])
        return Front(spec, points, note)
    points = summary[cols].copy()
    points["x_value"] = pd.to_numeric(summary[xcol], errors="coerce")
    points["y_value"] = pd.to_numeric(summary[ycol], errors="coerce")
    points = points.dropna(subset=["x_value", "y_value"]).reset_index(drop=True)
    points["on_front"] = non_dominated(
        points["x_value"].to_numpy(float), points["y_value"].to_numpy(float),
        spec.x_better, spec.y_better,
    )
    return Front(spec, points, note)


def fronts(summary: pd.DataFrame, energy_reason: str | None = None) -> list[Front]:
    """Energy fronts when energy is known; otherwise throughput vs p90 latency, saying why.

    A study with serving runs (its summary has ``j_per_request``) also gets the latency-energy
    fronts per request: p90 TTFT and p90 TPOT against energy per request.
    """
    if energy_reason is None:
        serving = [front(summary, spec) for spec in SERVING_FRONTS
                   if f"{spec.x}_mean" in summary.columns]
        return [front(summary, spec) for spec in ENERGY_FRONTS] + serving
    note = (
        f"energy per output token is unavailable ({energy_reason}); showing the throughput vs "
        "p90 latency front instead"
    )
    return [front(summary, FALLBACK_FRONT, note)]


def long_table(found: list[Front]) -> pd.DataFrame:
    """Every front's points in one long table (pareto.csv)."""
    parts = []
    for f in found:
        p = f.points.copy()
        p.insert(0, "front", f.spec.name)
        p["x_metric"] = f.spec.x
        p["y_metric"] = f.spec.y
        parts.append(p)
    if not parts:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    first = [c for c in PARETO_COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]
