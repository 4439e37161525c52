import itertools
import math

import numpy as np
import pandas as pd
import pytest
from _synthetic import make_study

from harness.analysis.effects import main_effects
from harness.analysis.report import plan_levels
from harness.analysis.table import collect, load_plan


def table_of(cells: dict[tuple, list[float]], axes: list[str], metric: str) -> pd.DataFrame:
    """A results table with one row per run, built by hand."""
    rows = []
    for n, (key, values) in enumerate(cells.items()):
        for c, v in enumerate(values, start=1):
            rows.append({"run_id": f"e{n}-c{c}", "experiment_id": f"e{n}", "status": "done",
                         **{f"param.{a}": k for a, k in zip(axes, key, strict=True)}, metric: v})
    return pd.DataFrame(rows)


def test_ranks_batch_size_before_precision_on_known_effects(tmp_path):
    study_dir = make_study(
        tmp_path, sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={"batch_size": {8: 1 / 5}, "precision": {"bf16": 1 / 1.2}},
        tps_factors={"batch_size": {8: 4.0}, "precision": {"bf16": 1.5}},
        cycles=4, noise=0.03,
    )
    effects = main_effects(collect(study_dir), plan_levels(load_plan(study_dir)))
    energy = effects.ranking[effects.ranking["metric"] == "j_per_output_token"]
    assert list(energy.sort_values("rank")["parameter"]) == ["batch_size", "precision"]
    assert energy.iloc[0]["fold_span"] == pytest.approx(5.0, rel=0.05)
    t = effects.table.set_index(["metric", "parameter"])
    bs = t.loc[("j_per_output_token", "batch_size")]
    assert (bs["level"], bs["reference"]) == ("8", "1")
    assert bs["ratio"] == pytest.approx(0.2, rel=0.05)
    assert bs["ci95_low"] < 0.2 < bs["ci95_high"]
    assert bs["matched_combinations"] == 2
    prec = t.loc[("j_per_output_token", "precision")]
    assert prec["ratio"] == pytest.approx(1 / 1.2, rel=0.05)
    assert prec["ci95_low"] < 1 / 1.2 < prec["ci95_high"]
    assert prec["ci95_high"] < 1.0  # the 1.2x effect is resolved, not lost in noise
    tps = effects.ranking[effects.ranking["metric"] == "output_tokens_per_s"]
    assert list(tps.sort_values("rank")["parameter"]) == ["batch_size", "precision"]
    assert effects.top("output_tokens_per_s")["fold_span"] == pytest.approx(4.0, rel=0.05)


def test_a_parameter_without_effect_ranks_last_and_its_interval_holds_one(tmp_path):
    study_dir = make_study(
        tmp_path,
        sweep={"batch_size": [1, 4, 16], "precision": ["fp32", "bf16"],
               "pytorch.attn_implementation": ["sdpa", "eager"]},
        j_factors={"batch_size": {4: 0.5, 16: 0.25}, "precision": {"bf16": 0.8}},
        cycles=3, noise=0.03,
    )
    effects = main_effects(collect(study_dir), plan_levels(load_plan(study_dir)))
    energy = effects.ranking[effects.ranking["metric"] == "j_per_output_token"]
    assert list(energy.sort_values("rank")["parameter"]) == [
        "batch_size", "precision", "pytorch.attn_implementation"]
    assert energy.iloc[0]["fold_span"] == pytest.approx(4.0, rel=0.05)
    attn = effects.table[(effects.table["metric"] == "j_per_output_token")
                         & (effects.table["parameter"] == "pytorch.attn_implementation")].iloc[0]
    assert attn["ci95_low"] < 1.0 < attn["ci95_high"]
    assert attn["matched_combinations"] == 6


def test_one_axis_ratio_is_the_ratio_of_means():
    cells = {(1,): [10.0, 12.0, 11.0], (8,): [2.0, 2.5, 2.3]}
    effects = main_effects(table_of(cells, ["batch_size"], "j_per_output_token"),
                           metrics={"j_per_output_token": "J"})
    row = effects.table.iloc[0]
    assert row["ratio"] == pytest.approx(np.mean([2.0, 2.5, 2.3]) / np.mean([10.0, 12.0, 11.0]))


def test_the_ratio_is_a_geometric_mean_over_matched_combinations_only():
    # precision fp16 exists only at batch size 1: the bf16-vs-fp32 effect uses both batch
    # sizes, the fp16 one only batch size 1.
    cells = {
        (1, "fp32"): [10.0, 10.0], (1, "bf16"): [5.0, 5.0], (1, "fp16"): [4.0, 4.0],
        (8, "fp32"): [2.0, 2.0], (8, "bf16"): [1.6, 1.6],
    }
    effects = main_effects(table_of(cells, ["batch_size", "precision"], "j_per_output_token"),
                           metrics={"j_per_output_token": "J"})
    t = effects.table.set_index(["parameter", "level"])
    assert t.loc[("precision", "bf16"), "ratio"] == pytest.approx(math.sqrt(0.5 * 0.8))
    assert t.loc[("precision", "bf16"), "matched_combinations"] == 2
    assert t.loc[("precision", "bf16"), "ratio_min"] == pytest.approx(0.5)
    assert t.loc[("precision", "bf16"), "ratio_max"] == pytest.approx(0.8)
    assert t.loc[("precision", "fp16"), "ratio"] == pytest.approx(0.4)
    assert t.loc[("precision", "fp16"), "matched_combinations"] == 1
    # zero variance: the interval collapses onto the estimate
    assert t.loc[("precision", "fp16"), "ci95_low"] == pytest.approx(0.4)


def test_single_run_cells_give_no_interval():
    cells = {(1,): [10.0], (8,): [2.0]}
    effects = main_effects(table_of(cells, ["batch_size"], "j_per_output_token"),
                           metrics={"j_per_output_token": "J"})
    row = effects.table.iloc[0]
    assert row["ratio"] == pytest.approx(0.2)
    assert math.isnan(row["ci95_low"])
    assert row["note"] == "a cell has < 2 runs"


def test_interval_covers_the_true_effect_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    true_bs, true_prec = 0.25, 0.9
    hits = 0
    trials = 300
    for _ in range(trials):
        cells = {}
        for bs, prec in itertools.product([1, 8], ["fp32", "bf16"]):
            mu = (true_bs if bs == 8 else 1.0) * (true_prec if prec == "bf16" else 1.0)
            cells[(bs, prec)] = list(mu * np.exp(rng.normal(0, 0.05, size=4)))
        effects = main_effects(table_of(cells, ["batch_size", "precision"], "y"),
                               metrics={"y": "y"})
        row = effects.table.set_index("parameter").loc["batch_size"]
        hits += row["ci95_low"] <= true_bs <= row["ci95_high"]
    assert 0.90 <= hits / trials <= 0.99


def test_missing_metric_and_single_level_are_noted_not_raised():
    cells = {(1,): [1.0, 1.1]}
    effects = main_effects(table_of(cells, ["batch_size"], "output_tokens_per_s"))
    assert effects.table.empty
    assert any("fewer than 2 levels" in n for n in effects.notes)
    assert any("j_per_output_token: no run has a value" in n for n in effects.notes)


def test_scoped_axis_none_values_are_not_a_level():
    cells = {("pytorch", None): [1.0, 1.0], ("vllm", 64): [2.0, 2.0], ("vllm", 256): [3.0, 3.0]}
    effects = main_effects(table_of(cells, ["backend", "vllm.max_num_seqs"], "y"),
                           metrics={"y": "y"})
    row = effects.table.set_index("parameter").loc["vllm.max_num_seqs"]
    assert (row["level"], row["reference"]) == ("256", "64")
    assert row["ratio"] == pytest.approx(1.5)
