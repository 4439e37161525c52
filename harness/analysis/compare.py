"""Original vs reproduced figures: ratio, and whether the new mean lies in the original intervals.

For each experiment and summarised headline metric (harness.results.headline.SUMMARISED), the
new mean is compared with the original's 95 % confidence interval of the mean and with the
95 % prediction interval for the mean of m new runs given n original runs (Student's t):
mean +- t(0.975, n - 1) * s * sqrt(1/n + 1/m). The prediction interval is the fairer test for a
few new runs: the confidence interval of a mean is narrower than the spread of single runs.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats as sps

from harness.analysis.stats import CONFIDENCE, param_columns
from harness.results.headline import SUMMARISED


def prediction_interval(mean: float, std: float, n: int, m: int) -> tuple[float, float]:
    """95 % interval for the mean of m new runs, from n original runs (Student's t); NaN if unknown."""
    if n < 2 or m < 1 or not math.isfinite(std):
        return math.nan, math.nan
    half = float(sps.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * std * math.sqrt(1 / n + 1 / m)
    return mean - half, mean + half


def _metric_row(metric: str, orig: pd.Series, new: pd.Series) -> dict[str, Any]:
    """One metric of one experiment: the original's figures, the new ones and the tests."""
    old_mean, new_mean = orig.get(f"{metric}_mean"), new.get(f"{metric}_mean")
    n_old, n_new = int(orig.get(f"{metric}_n", 0)), int(new.get(f"{metric}_n", 0))
    low, high = orig.get(f"{metric}_ci95_low"), orig.get(f"{metric}_ci95_high")
    known = n_old > 0 and n_new > 0 and pd.notna(old_mean) and pd.notna(new_mean)
    pi_low, pi_high = (prediction_interval(old_mean, orig.get(f"{metric}_std"), n_old, n_new)
                       if known else (math.nan, math.nan))
    return {
        "original_mean": old_mean,
        "original_ci95_low": low,
        "original_ci95_high": high,
        "original_n": n_old,
        "new_mean": new_mean,
        "new_n": n_new,
        "ratio_new_to_original": new_mean / old_mean if known and old_mean else math.nan,
        "within_original_ci95": bool(low <= new_mean <= high) if known and pd.notna(low) else None,
        "original_pi95_low": pi_low,
        "original_pi95_high": pi_high,
        "within_original_pi95": (bool(pi_low <= new_mean <= pi_high)
                                 if known and math.isfinite(pi_low) else None),
    }


def compare(original: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Original vs new headline figures per experiment: ratio, inside the CI, inside the PI."""
    orig = original.set_index("experiment_id")
    params = param_columns(new)
    rows = []
    for _, row in new.iterrows():
        exp_id = row["experiment_id"]
        if exp_id not in orig.index or row["runs_done"] == 0:
            continue
        for metric in SUMMARISED:
            rows.append({
                "experiment_id": exp_id,
                **{c: row[c] for c in params},
                "metric": metric.column,
                "label": metric.label,
                **_metric_row(metric.column, orig.loc[exp_id], row),
            })
    return pd.DataFrame(rows)
