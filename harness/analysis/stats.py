"""Summary statistics per experiment over its cycles: mean, spread and 95 % intervals.

Each experiment ran once per cycle; its n successful runs are treated as independent samples of
the configuration. For each headline metric this gives the mean, the sample standard deviation
(ddof=1), the coefficient of variation (std / mean), a 95 % confidence interval of the mean from
Student's t distribution (``scipy.stats.t``), and, when n >= 5, a bootstrap interval of the mean
(``scipy.stats.bootstrap``, BCa, fixed seed so that the numbers are reproducible). A metric that
is unknown (null) in a run is left out of that metric's n; unknown is never counted as 0.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.uncertainty import mean_uncertainty
from harness.results.headline import SUMMARISED

CONFIDENCE = 0.95
BOOTSTRAP_MIN_N = 5
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0

#: the headline metrics summarised per experiment: table column -> readable label with unit
#: (built from ``harness.results.headline.SUMMARISED``, the one list)
METRICS: dict[str, str] = {m.column: m.label for m in SUMMARISED}

#: also summarised in a study with serving runs (docs/serving.md, section 7)
SERVING_METRICS: dict[str, str] = {
    "j_per_request": "energy per request (J)",
    "ttft_p90_s": "time to first token p90 (s)",
    "tpot_p90_s": "time per output token p90 (s)",
    "requests_per_s": "requests/s (steady window)",
    "goodput_requests_per_s": "goodput (requests/s meeting the SLOs)",
}


#: the energy of the window, the host's beside the GPUs, their total, and peak power
#: (docs/methodology.md, section 2.1; the report's energy section)
ENERGY_METRICS: dict[str, str] = {
    "energy_j": "energy of the measured devices (J)",
    "host_energy_j": "host CPU + DRAM energy (J)",
    "cpu_energy_j": "host CPU package energy (J)",
    "dram_energy_j": "host DRAM energy (J)",
    "total_energy_j": "total energy (J)",
    "peak_power_w": "peak power (W)",
}

#: every summarised metric's label with its unit
LABELS: dict[str, str] = {**METRICS, **SERVING_METRICS, **ENERGY_METRICS}


def metrics_for(table: pd.DataFrame) -> dict[str, str]:
    """The metrics a study's summary holds: the headline and energy ones, serving's when it serves."""
    serves = "mode" in table.columns and bool((table["mode"] == "serving").any())
    return {**METRICS, **(SERVING_METRICS if serves else {}), **ENERGY_METRICS}


STAT_SUFFIXES = (
    "n", "mean", "std", "cv", "ci95_low", "ci95_high", "boot95_low", "boot95_high",
)


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The t-distribution confidence interval of the mean; NaN when n < 2."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(np.mean(values))
    sem = float(sps.sem(values))
    if sem == 0.0:
        return mean, mean
    low, high = sps.t.interval(confidence, df=n - 1, loc=mean, scale=sem)
    return float(low), float(high)


def bootstrap_interval(
    values: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """A seeded bootstrap (BCa) interval of the mean; NaN when n < BOOTSTRAP_MIN_N."""
    n = len(values)
    if n < BOOTSTRAP_MIN_N:
        return math.nan, math.nan
    if float(np.ptp(values)) == 0.0:
        mean = float(values[0])
        return mean, mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns on degenerate resamples; we fall back
        res = sps.bootstrap(
            (values,), np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
            method="BCa", rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
        low, high = res.confidence_interval
        if not (np.isfinite(low) and np.isfinite(high)):
            res = sps.bootstrap(
                (values,), np.mean, confidence_level=confidence,
                n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                rng=np.random.default_rng(BOOTSTRAP_SEED),
            )
            low, high = res.confidence_interval
    return float(low), float(high)


def describe(values: Any) -> dict[str, float]:
    """n, mean, std, CV and 95 % intervals of one metric's known values."""
    arr = pd.to_numeric(pd.Series(values, dtype="float64"), errors="coerce").dropna().to_numpy()
    n = len(arr)
    out = dict.fromkeys(STAT_SUFFIXES, math.nan)
    out["n"] = float(n)
    if n == 0:
        return out
    mean = float(np.mean(arr))
    std = float(np.std(arr, ddof=1)) if n >= 2 else math.nan
    out["mean"] = mean
    out["std"] = std
    out["cv"] = std / abs(mean) if n >= 2 and mean != 0 else math.nan
    out["ci95_low"], out["ci95_high"] = t_interval(arr)
    out["boot95_low"], out["boot95_high"] = bootstrap_interval(arr)
    return out


def param_columns(table: pd.DataFrame) -> list[str]:
    """The ``param.<axis>`` columns of a results table, in order."""
    return [c for c in table.columns if str(c).startswith("param.")]


def summarize(table: pd.DataFrame, metrics: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per experiment: its swept values, run counts and statistics of each metric."""
    metrics = metrics or metrics_for(table)
    params = param_columns(table)
    rows = []
    if table.empty:
        return pd.DataFrame(columns=["experiment_id", *params, "runs_planned", "runs_done"])
    for exp_id, group in table.groupby("experiment_id", sort=False):
        done = group[group["status"] == "done"]
        row: dict[str, Any] = {"experiment_id": exp_id}
        for col in params:
            row[col] = group[col].iloc[0]
        row["runs_planned"] = len(group)
        row["runs_done"] = len(done)
        for metric in metrics:
            values = done[metric] if metric in done.columns else pd.Series(dtype="float64")
            for key, value in describe(values).items():
                row[f"{metric}_{key}"] = value
            row.update(_mean_budget(done, metric))
        rows.append(row)
    summary = pd.DataFrame(rows)
    for metric in metrics:
        summary[f"{metric}_n"] = summary[f"{metric}_n"].astype("int64")
    return summary


def _mean_budget(done: pd.DataFrame, metric: str) -> dict[str, Any]:
    """The expanded uncertainty of the metric's mean over runs, where the runs state budgets."""
    if f"{metric}_u95" not in done.columns:
        return {}
    combined = mean_uncertainty(list(done[metric]), list(done[f"{metric}_u95"]),
                                list(done[f"{metric}_u95_random"]))
    return {
        f"{metric}_u95": combined.u95 if combined else math.nan,
        f"{metric}_u95_random": combined.u95_random if combined else math.nan,
        f"{metric}_u_dominant": combined.dominant if combined else None,
    }


def energy_unavailable_reason(table: pd.DataFrame) -> str | None:
    """Why energy per token is unknown in every done run, or None when some run has it."""
    done = table[table["status"] == "done"] if "status" in table.columns else table
    if "j_per_output_token" in done.columns and done["j_per_output_token"].notna().any():
        return None
    if done.empty:
        return "no run finished"
    reasons = []
    if "energy_unavailable_reason" in done.columns:
        reasons = sorted({str(r) for r in done["energy_unavailable_reason"].dropna()})
    return "; ".join(reasons) if reasons else "no run measured energy"
