"""One list of headline metrics: statistics, effects, report, CLI table and bundle check all use
harness.results.headline's SUMMARISED and EFFECTS."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _synthetic import make_study

from harness.analysis.report import build
from harness.analysis.stats import ENERGY_METRICS
from harness.bundle.verify import _check_aggregates
from harness.cli.report import _effect_rows
from harness.results.headline import EFFECTS, SUMMARISED

REPO = Path(__file__).resolve().parents[2]

#: shortens the headline lists before anything else imports them, then reads what stats and
#: effects hold: a copied list would not follow
FOLLOW = """
import json
import harness.results.headline as h
h.SUMMARISED = h.SUMMARISED[1:3]
h.EFFECTS = h.EFFECTS[-1:]
from harness.analysis.effects import EFFECT_METRICS
from harness.analysis.stats import METRICS
print(json.dumps({"stats": METRICS, "effects": EFFECT_METRICS,
                  "summarised": {m.column: m.label for m in h.SUMMARISED},
                  "ranked": {m.column: m.label for m in h.EFFECTS}}))
"""


def test_stats_and_effects_build_their_lists_from_the_headline_module():
    out = subprocess.run([sys.executable, "-c", FOLLOW], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=120)
    got = json.loads(out.stdout)
    assert len(got["summarised"]) == 2 and len(got["ranked"]) == 1
    assert got["stats"] == got["summarised"]
    assert got["effects"] == got["ranked"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(
        tmp_path_factory.mktemp("study"), sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={"batch_size": {8: 1 / 5}, "precision": {"bf16": 1 / 1.2}},
        tps_factors={"batch_size": {8: 4.0}, "precision": {"bf16": 1.3}}, cycles=2, noise=0.03,
    )


def test_summary_report_cli_table_and_bundle_use_the_same_lists(study: Path):
    report = build(study, figures=False)
    summarised = [m.column for m in SUMMARISED]
    ranked = [m.column for m in EFFECTS]

    # statistics: summary.csv summarises the SUMMARISED metrics first, in order, then only the
    # energy breakdown (this offline study has no serving figures)
    means = [c.removesuffix("_mean") for c in report.summary.columns if c.endswith("_mean")]
    assert means[:len(summarised)] == summarised
    assert means[len(summarised):] == [m for m in ENERGY_METRICS if m not in summarised]
    # effects: every EFFECTS metric is ranked, no other
    assert list(dict.fromkeys(report.effects.ranking["metric"])) == ranked
    # report: a summary column per SUMMARISED metric, a headline line per EFFECTS metric
    md = report.files["report (markdown)"].read_text(encoding="utf-8")
    for metric in SUMMARISED:
        assert f"{metric.label} mean [95% CI]" in md, metric.column
    assert [line.split(":")[0] for line in report.headline()] == [m.label for m in EFFECTS]
    # CLI table: effects rows labelled by the headline metrics' labels and short labels
    assert {r["metric"] for r in _effect_rows(report, short=False)} == {m.label for m in EFFECTS}
    assert {r["metric"] for r in _effect_rows(report, short=True)} == {m.short for m in EFFECTS}
    # bundle check: summary.csv must hold every SUMMARISED metric
    problems: list[str] = []
    _check_aggregates(study, problems)
    assert problems == []
    stored = pd.read_csv(study / "summary.csv")
    for metric in SUMMARISED:
        stored.drop(columns=[c for c in stored.columns if c.startswith(metric.column + "_")]
                    ).to_csv(study / "summary.csv", index=False)
        problems = []
        _check_aggregates(study, problems)
        assert any(f"lacks column {metric.column}_" in p for p in problems), (metric, problems)
    stored.to_csv(study / "summary.csv", index=False)
