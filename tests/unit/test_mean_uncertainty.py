"""The uncertainty of an experiment's mean over its runs: scatter, budgets, shared accuracy."""

import math

import pandas as pd
import pytest
from scipy import stats as sps

from harness.analysis.stats import summarize
from harness.analysis.uncertainty import mean_uncertainty


def test_one_run_keeps_its_own_budget():
    u = mean_uncertainty([10.0], [0.6], [0.3])
    assert u is not None
    systematic = math.sqrt(0.6**2 - 0.3**2)
    assert u.u95 == pytest.approx(math.hypot(0.3, systematic))
    assert u.u95_random == pytest.approx(0.3)
    assert u.dominant == "sensor_accuracy"


def test_scattered_runs_are_dominated_by_their_scatter():
    values = [10.0, 12.0, 9.0, 11.5, 8.5]
    u = mean_uncertainty(values, [0.2] * 5, [0.1] * 5)
    s = pd.Series(values).std(ddof=1)
    scatter = sps.t.ppf(0.975, 4) * s / math.sqrt(5)
    assert u.u95_random == pytest.approx(scatter)
    assert u.u95 == pytest.approx(math.hypot(scatter, math.sqrt(0.2**2 - 0.1**2)))
    assert u.dominant == "run_to_run"


def test_runs_that_agree_better_than_their_budgets_keep_the_budget_as_a_floor():
    u = mean_uncertainty([10.0, 10.0, 10.0, 10.0], [0.4] * 4, [0.4] * 4)
    assert u.u95_random == pytest.approx(0.4 / 2)  # rms(0.4) / sqrt(4)
    assert u.dominant == "measurement_random"


def test_the_shared_accuracy_does_not_average_down():
    one = mean_uncertainty([100.0], [5.0], [0.0])
    many = mean_uncertainty([100.0] * 9, [5.0] * 9, [0.0] * 9)
    assert one.u95 == pytest.approx(5.0) and many.u95 == pytest.approx(5.0)


def test_runs_without_a_value_or_budget_are_left_out_and_none_without_any():
    u = mean_uncertainty([10.0, None, 11.0], [0.5, 0.5, None], [0.1, 0.1, 0.1])
    assert u is not None and u.u95 == pytest.approx(math.hypot(0.1, math.sqrt(0.24)))
    assert mean_uncertainty([1.0], [None], [None]) is None


def test_summary_carries_the_mean_uncertainty_of_budgeted_metrics():
    table = pd.DataFrame({
        "experiment_id": ["a", "a", "b"], "status": ["done"] * 3,
        "j_per_output_token": [1.0, 1.2, 2.0],
        "j_per_output_token_u95": [0.06, 0.07, 0.1],
        "j_per_output_token_u95_random": [0.01, 0.01, 0.02],
    })
    summary = summarize(table, {"j_per_output_token": "J/tok"}).set_index("experiment_id")
    assert summary.loc["a", "j_per_output_token_u_dominant"] == "run_to_run"
    assert summary.loc["b", "j_per_output_token_u_dominant"] == "sensor_accuracy"
    assert summary.loc["b", "j_per_output_token_u95"] == pytest.approx(0.1)
