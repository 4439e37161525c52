import json
import math

import numpy as np
import pandas as pd
import pytest
from _synthetic import make_study

from harness.analysis.stats import METRICS, describe, summarize
from harness.analysis.table import collect

# Student's t 0.975 quantiles from printed tables, so the test does not reuse scipy's path.
T975 = {1: 12.7062047, 2: 4.3026527, 3: 3.1824463, 4: 2.7764451, 5: 2.5705818, 9: 2.2621572}


def by_hand(values: list[float]) -> dict[str, float]:
    x = np.array(values, dtype=float)
    n = len(x)
    mean = x.sum() / n
    std = math.sqrt(((x - mean) ** 2).sum() / (n - 1))
    half = T975[n - 1] * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "cv": std / mean,
            "ci95_low": mean - half, "ci95_high": mean + half}


@pytest.mark.parametrize("values", [[1.0, 2.0], [3.1, 2.9, 3.0, 3.3], [10, 11, 9, 10.5, 9.7, 10.2]])
def test_describe_matches_a_hand_computation(values):
    got = describe(values)
    want = by_hand(values)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_unknown_values_are_left_out_not_zero():
    got = describe([2.0, None, float("nan"), 4.0])
    assert got["n"] == 2
    assert got["mean"] == pytest.approx(3.0)


def test_no_and_one_value():
    assert describe([])["n"] == 0 and math.isnan(describe([])["mean"])
    one = describe([5.0])
    assert one["mean"] == 5.0
    assert math.isnan(one["std"]) and math.isnan(one["ci95_low"])


def test_constant_values_have_a_zero_width_interval():
    got = describe([2.0] * 6)
    assert got["ci95_low"] == got["ci95_high"] == 2.0
    assert got["boot95_low"] == got["boot95_high"] == 2.0


def test_bootstrap_only_from_five_runs_and_reproducible():
    assert math.isnan(describe([1.0, 2.0, 3.0, 4.0])["boot95_low"])
    rng = np.random.default_rng(3)
    values = list(rng.normal(50, 2, size=20))
    a, b = describe(values), describe(values)
    assert a["boot95_low"] == b["boot95_low"]
    assert a["boot95_low"] < np.mean(values) < a["boot95_high"]
    # For normal data the bootstrap interval is close to the t-interval.
    width_t = a["ci95_high"] - a["ci95_low"]
    width_b = a["boot95_high"] - a["boot95_low"]
    assert 0.6 < width_b / width_t < 1.4


def test_summary_matches_the_raw_result_files(tmp_path):
    study_dir = make_study(
        tmp_path, sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={"batch_size": {8: 0.2}}, cycles=5, noise=0.05,
    )
    summary = summarize(collect(study_dir)).set_index("experiment_id")
    raw: dict[str, dict[str, list[float]]] = {}
    for path in sorted((study_dir / "runs").glob("*/result.json")):
        r = json.loads(path.read_text())
        values = raw.setdefault(r["run"]["experiment_id"], {m: [] for m in METRICS})
        values["j_per_output_token"].append(r["energy"]["j_per_output_token"])
        values["output_tokens_per_s"].append(r["throughput"]["output_tokens_per_s"])
        values["e2e_p50_s"].append(r["latency"]["e2e"]["p50_s"])
        values["e2e_p90_s"].append(r["latency"]["e2e"]["p90_s"])
        values["mean_power_w"].append(r["energy"]["mean_power_w"])
    assert set(raw) == set(summary.index)
    for exp_id, metrics in raw.items():
        assert summary.at[exp_id, "runs_done"] == 5
        for metric, values in metrics.items():
            want = by_hand(values)
            for key, value in want.items():
                got = summary.at[exp_id, f"{metric}_{key}"]
                assert got == pytest.approx(value, rel=1e-9), (exp_id, metric, key)
            assert not math.isnan(summary.at[exp_id, f"{metric}_boot95_low"])


def test_summary_of_a_partial_study_counts_done_runs_only(tmp_path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 2]}, j_factors={}, cycles=3,
                           failed=1, pending=1)
    summary = summarize(collect(study_dir))
    assert summary["runs_planned"].sum() == 6
    assert summary["runs_done"].sum() == 4
    assert (summary["j_per_output_token_n"] == summary["runs_done"]).all()


def test_summary_with_energy_unknown_has_nan_not_zero(tmp_path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 2]}, j_factors={}, energy=False)
    summary = summarize(collect(study_dir))
    assert summary["j_per_output_token_n"].eq(0).all()
    assert summary["j_per_output_token_mean"].isna().all()
    assert pd.notna(summary["output_tokens_per_s_mean"]).all()
