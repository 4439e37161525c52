"""The analysis of serving studies: summary metrics, latency-energy fronts, load axes."""

import pandas as pd

from harness.analysis.pareto import SERVING_FRONTS, fronts
from harness.analysis.serving import load_axes
from harness.analysis.stats import (
    ENERGY_METRICS,
    METRICS,
    SERVING_METRICS,
    metrics_for,
    summarize,
)


def table(mode: str) -> pd.DataFrame:
    rows = []
    for i, (rate, j, ttft) in enumerate([(4, 2.0, 0.1), (4, 2.2, 0.12), (8, 1.5, 0.3),
                                         (8, 1.6, 0.32)]):
        rows.append({"run_id": f"r{i}", "experiment_id": f"e{rate}", "status": "done",
                     "mode": mode, "param.serving.request_rate": rate, "j_per_request": j,
                     "ttft_p90_s": ttft, "tpot_p90_s": ttft / 10, "j_per_output_token": j / 10,
                     "output_tokens_per_s": 100 * rate, "e2e_p50_s": 1.0, "e2e_p90_s": 2.0,
                     "mean_power_w": 300.0, "requests_per_s": rate,
                     "goodput_requests_per_s": rate / 2})
    return pd.DataFrame(rows)


def test_a_serving_study_summarises_its_own_metrics_too():
    assert metrics_for(table("offline")) == {**METRICS, **ENERGY_METRICS}
    assert metrics_for(table("serving")) == {**METRICS, **SERVING_METRICS, **ENERGY_METRICS}
    summary = summarize(table("serving"))
    low = summary[summary["experiment_id"] == "e4"].iloc[0]
    assert low["j_per_request_mean"] == 2.1 and low["ttft_p90_s_n"] == 2


def test_latency_energy_fronts_per_request_when_energy_is_known():
    summary = summarize(table("serving"))
    names = [f.spec.name for f in fronts(summary)]
    assert names[-2:] == [s.name for s in SERVING_FRONTS]
    ttft = fronts(summary)[-2]
    assert ttft.points["on_front"].all()  # lower energy costs latency: both are on the front
    assert [f.spec.name for f in fronts(summarize(table("offline")))] == names[:-2]
    assert len(fronts(summary, "no sensor")) == 1  # without energy: the fallback only


def test_the_load_axes_of_a_sweep():
    levels = {"serving.request_rate": [4, 8], "serving.concurrency": [2], "batch_size": [1, 2]}
    assert load_axes(list(levels), levels) == ["serving.request_rate"]
