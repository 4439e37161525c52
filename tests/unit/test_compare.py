"""Original vs reproduced figures: the prediction interval and the flags that compare() sets."""

import math

import pandas as pd
import pytest

from harness.analysis.compare import compare, prediction_interval

#: Student's t at 0.975 with 2 degrees of freedom (any t table)
T_2 = 4.303


def test_the_prediction_interval_is_the_t_interval_for_the_mean_of_m_new_runs():
    # originals 10, 12, 14: mean 12, s 2, n 3; one new run
    low, high = prediction_interval(12.0, 2.0, 3, 1)
    half = T_2 * 2.0 * math.sqrt(1 / 3 + 1)
    assert low == pytest.approx(12.0 - half, abs=1e-2)
    assert high == pytest.approx(12.0 + half, abs=1e-2)
    # more new runs narrow it; it is never narrower than the confidence interval of the mean
    low4, high4 = prediction_interval(12.0, 2.0, 3, 4)
    assert low < low4 < 12.0 < high4 < high
    assert high4 - 12.0 > T_2 * 2.0 / math.sqrt(3)


@pytest.mark.parametrize(("std", "n", "m"), [(2.0, 1, 1), (2.0, 3, 0), (math.nan, 3, 1)])
def test_the_prediction_interval_is_unknown_without_enough_runs(std, n, m):
    assert all(math.isnan(v) for v in prediction_interval(12.0, std, n, m))


def test_compare_flags_a_new_mean_inside_and_outside_the_original_intervals():
    col = "output_tokens_per_s"
    original = pd.DataFrame({
        "experiment_id": ["a", "b"], "param.batch_size": [1, 2], "runs_done": [3, 3],
        f"{col}_mean": [12.0, 12.0], f"{col}_std": [2.0, 2.0], f"{col}_n": [3, 3],
        f"{col}_ci95_low": [7.03, 7.03], f"{col}_ci95_high": [16.97, 16.97],
    })
    new = pd.DataFrame({
        "experiment_id": ["a", "b"], "param.batch_size": [1, 2], "runs_done": [1, 1],
        f"{col}_mean": [20.0, 30.0], f"{col}_n": [1, 1],
    })
    rows = compare(original, new)
    rows = rows[rows["metric"] == col].set_index("experiment_id")
    # 20 is outside the confidence interval of the mean but inside the prediction interval
    assert not rows.loc["a", "within_original_ci95"] and rows.loc["a", "within_original_pi95"]
    assert not rows.loc["b", "within_original_ci95"] and not rows.loc["b", "within_original_pi95"]
    assert rows.loc["a", "ratio_new_to_original"] == pytest.approx(20 / 12)
    assert list(rows["param.batch_size"]) == [1, 2]
