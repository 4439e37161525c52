"""Main effect of each swept parameter on a metric, holding the other swept parameters fixed.

Estimator (per metric y, swept parameter P, level l against the reference level r = P's first
level in the study's sweep order):

1. A *cell* is one setting of every swept parameter; its runs are the done runs with that
   setting and a known y. Per cell: mean m, sample std s, count n.
2. A *matched combination* c is a setting of the other swept parameters for which both the cell
   (P=l, c) and the cell (P=r, c) exist. For each: d_c = ln m(l, c) - ln m(r, c), the log of the
   ratio of means.
3. The effect of l against r is the geometric mean of the matched ratios of means,
   ratio = exp(mean_c d_c). With a balanced full factorial this equals the main effect of P in a
   log-additive model.
4. Interval: by the delta method Var(ln m) ~= s^2 / (n m^2) per cell, so
   Var(mean_c d_c) = sum_c [Var(ln m_l,c) + Var(ln m_r,c)] / K^2 over the K combinations. The 95 %
   interval is exp(mean d +- t * sqrt(Var)) with t from Student's t at the Welch-Satterthwaite
   degrees of freedom. It reflects run-to-run noise within cells; how much the effect differs
   between combinations (an interaction) is shown separately as ratio_min and ratio_max. When a
   cell has fewer than 2 runs its variance is unknown and the interval is left empty.
5. Ranking: a parameter's size is its fold span, exp(max - min) of the effects of all its levels
   (the reference counts as 0), i.e. how many times y changes between the parameter's best and
   worst level. Parameters are ranked by fold span, largest first, separately for each metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.stats import CONFIDENCE, param_columns
from harness.results.headline import EFFECTS

#: the metrics whose main effects are ranked: column -> label (``harness.results.headline.EFFECTS``)
EFFECT_METRICS: dict[str, str] = {m.column: m.label for m in EFFECTS}

EFFECT_COLUMNS = [
    "metric", "parameter", "level", "reference", "ratio", "ci95_low", "ci95_high",
    "log_ratio_se", "df", "matched_combinations", "ratio_min", "ratio_max",
    "parameter_fold_span", "rank", "note",
]
RANKING_COLUMNS = [
    "metric", "rank", "parameter", "fold_span", "strongest_level", "reference", "ratio",
    "ci95_low", "ci95_high", "matched_combinations",
]


@dataclass
class Effects:
    """Main effects per level (``table``), the ranking per metric, and what was skipped."""

    table: pd.DataFrame
    ranking: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def top(self, metric: str) -> pd.Series | None:
        """The highest-ranked parameter for a metric, or None."""
        rows = self.ranking[self.ranking["metric"] == metric]
        return None if rows.empty else rows.sort_values("rank").iloc[0]


def _plain(value: Any) -> Any:
    """A swept value as plain Python: numpy scalars unwrapped, integral floats as ints."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _key(value: Any) -> str:
    """A hashable, order-stable key for a swept value (numbers, strings, lists, dicts)."""
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _label(value: Any) -> str:
    return value if isinstance(value, str) else _key(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


@dataclass
class _Cell:
    mean: float
    var_log: float  # Var(ln mean) by the delta method; NaN when n < 2
    n: int


def _cells(done: pd.DataFrame, params: list[str], metric: str) -> dict[tuple[str, ...], _Cell]:
    cells: dict[tuple[str, ...], _Cell] = {}
    if metric not in done.columns:
        return cells
    keyed = done.assign(_k=[tuple(_key(r[p]) for p in params) for _, r in done.iterrows()])
    for key, group in keyed.groupby("_k", sort=False):
        values = pd.to_numeric(group[metric], errors="coerce").dropna().to_numpy(dtype=float)
        values = values[values > 0]
        n = len(values)
        if n == 0:
            continue
        mean = float(np.mean(values))
        var_log = float(np.var(values, ddof=1)) / (n * mean * mean) if n >= 2 else math.nan
        cells[key] = _Cell(mean, var_log, n)
    return cells


def _contrast(
    cells: dict[tuple[str, ...], _Cell], index: int, level: str, reference: str
) -> dict[str, Any] | None:
    """The effect of one level against the reference over matched combinations."""
    by_rest: dict[tuple[str, ...], dict[str, _Cell]] = {}
    for key, cell in cells.items():
        rest = key[:index] + key[index + 1:]
        by_rest.setdefault(rest, {})[key[index]] = cell
    diffs, variances, pieces = [], [], []
    for group in by_rest.values():
        if level in group and reference in group:
            a, b = group[level], group[reference]
            diffs.append(math.log(a.mean) - math.log(b.mean))
            variances.append(a.var_log + b.var_log)
            pieces.extend([(a.var_log, a.n), (b.var_log, b.n)])
    k = len(diffs)
    if k == 0:
        return None
    effect = float(np.mean(diffs))
    var = float(np.sum(variances)) / (k * k)
    low = high = se = df = math.nan
    if math.isfinite(var):
        se = math.sqrt(var)
        if var == 0.0:
            low = high = effect
            df = math.inf
        else:
            denom = sum((v / (k * k)) ** 2 / (n - 1) for v, n in pieces if v > 0)
            df = var * var / denom
            t = float(sps.t.ppf(0.5 + CONFIDENCE / 2, df))
            low, high = effect - t * se, effect + t * se
    ratios = np.exp(diffs)
    return {
        "effect": effect,
        "ratio": math.exp(effect),
        "ci95_low": math.exp(low) if math.isfinite(low) else math.nan,
        "ci95_high": math.exp(high) if math.isfinite(high) else math.nan,
        "log_ratio_se": se,
        "df": df,
        "matched_combinations": k,
        "ratio_min": float(ratios.min()),
        "ratio_max": float(ratios.max()),
    }


def levels_in(table: pd.DataFrame, column: str) -> list[Any]:
    """The distinct non-missing values of a column, in order of first appearance."""
    seen: dict[str, Any] = {}
    for value in table[column]:
        if not _is_missing(value) and _key(value) not in seen:
            seen[_key(value)] = value
    return list(seen.values())


def main_effects(
    table: pd.DataFrame,
    levels: dict[str, list[Any]] | None = None,
    metrics: dict[str, str] | None = None,
) -> Effects:
    """Main effects of every swept parameter on each metric, with intervals, ranked.

    ``levels`` gives each axis's values in sweep order (the first is the reference); by default
    the order in which they first appear in the table.
    """
    metrics = metrics or EFFECT_METRICS
    params = param_columns(table)
    notes: list[str] = []
    rows: list[dict[str, Any]] = []
    ranking: list[dict[str, Any]] = []
    done = table[table["status"] == "done"] if "status" in table.columns else table
    if not params:
        notes.append("the study sweeps no parameter, so there is no effect to estimate")
    for metric in metrics:
        if metric not in done.columns or done[metric].notna().sum() == 0:
            notes.append(f"{metric}: no run has a value; no effect estimated")
            continue
        cells = _cells(done, params, metric)
        sizes = []
        for index, col in enumerate(params):
            axis = col.removeprefix("param.")
            present = {k[index] for k in cells}
            order = levels[axis] if levels and axis in levels else levels_in(table, col)
            ordered = [v for v in order if not _is_missing(v) and _key(v) in present]
            if len(ordered) < 2:
                notes.append(f"{metric}: {axis} has fewer than 2 levels with results; skipped")
                continue
            ref = ordered[0]
            level_rows = []
            for value in ordered[1:]:
                est = _contrast(cells, index, _key(value), _key(ref))
                if est is None:
                    notes.append(
                        f"{metric}: {axis}={_label(value)} shares no combination of the other "
                        f"parameters with {axis}={_label(ref)}; not compared"
                    )
                    continue
                level_rows.append({"metric": metric, "parameter": axis, "level": _label(value),
                                   "reference": _label(ref), **est})
            if not level_rows:
                continue
            effects = [0.0] + [r["effect"] for r in level_rows]
            span = math.exp(max(effects) - min(effects))
            strongest = max(level_rows, key=lambda r: abs(r["effect"]))
            for r in level_rows:
                r["parameter_fold_span"] = span
                r["note"] = "" if r["ci95_low"] == r["ci95_low"] else "a cell has < 2 runs"
            rows.extend(level_rows)
            sizes.append({
                "metric": metric, "parameter": axis, "fold_span": span,
                "strongest_level": strongest["level"], "reference": strongest["reference"],
                "ratio": strongest["ratio"], "ci95_low": strongest["ci95_low"],
                "ci95_high": strongest["ci95_high"],
                "matched_combinations": strongest["matched_combinations"],
            })
        sizes.sort(key=lambda s: s["fold_span"], reverse=True)
        for rank, size in enumerate(sizes, start=1):
            size["rank"] = rank
            for r in rows:
                if r["metric"] == metric and r["parameter"] == size["parameter"]:
                    r["rank"] = rank
        ranking.extend(sizes)
    effect_table = pd.DataFrame(rows, columns=[*EFFECT_COLUMNS, "effect"])
    effect_table = effect_table.drop(columns=["effect"])
    return Effects(effect_table, pd.DataFrame(ranking, columns=RANKING_COLUMNS), notes)
