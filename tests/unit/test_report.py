import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic import make_study

from harness.analysis.pareto import non_dominated
from harness.analysis.report import build
from harness.errors import UserInputError

REPO = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def energy_study(tmp_path: Path) -> Path:
    return make_study(
        tmp_path, sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={"batch_size": {8: 1 / 5}, "precision": {"bf16": 1 / 1.2}},
        tps_factors={"batch_size": {8: 4.0}, "precision": {"bf16": 1.3}},
        cycles=3, noise=0.03, failed=1,
    )


def raw_means(study_dir: Path) -> dict[str, dict[str, float]]:
    """Per experiment, means straight from the result files."""
    values: dict[str, dict[str, list[float]]] = {}
    for path in (study_dir / "runs").glob("*/result.json"):
        r = json.loads(path.read_text())
        v = values.setdefault(r["run"]["experiment_id"], {"j": [], "tps": [], "p90": []})
        v["j"].append(r["energy"]["j_per_output_token"])
        v["tps"].append(r["throughput"]["output_tokens_per_s"])
        v["p90"].append(r["latency"]["e2e"]["p90_s"])
    return {e: {k: float(np.mean(x)) for k, x in v.items()} for e, v in values.items()}


def brute_front(points: dict[str, tuple[float, float]], x_max: bool) -> set[str]:
    """Points no other point beats: y (J/token) lower, x higher (throughput) or lower (p90)."""
    front = set()
    for a, (xa, ya) in points.items():
        beaten = False
        for b, (xb, yb) in points.items():
            if a == b:
                continue
            x_ok = xb >= xa if x_max else xb <= xa
            x_better = xb > xa if x_max else xb < xa
            if x_ok and yb <= ya and (x_better or yb < ya):
                beaten = True
        if not beaten:
            front.add(a)
    return front


def test_report_writes_every_artifact(energy_study: Path):
    report = build(energy_study)
    for name in ("results.csv", "results.parquet", "summary.csv", "effects.csv", "pareto.csv",
                 "report/report.md", "report/report.html"):
        assert (energy_study / name).is_file(), name
    figures = sorted(p.relative_to(energy_study / "report").as_posix()
                     for p in (energy_study / "report" / "figures").rglob("*.png"))
    assert "figures/effect_batch_size.png" in figures
    assert "figures/effect_precision.png" in figures
    assert "figures/pareto_energy_vs_throughput.png" in figures
    assert "figures/pareto_energy_vs_latency_p90.png" in figures
    assert len([f for f in figures if f.startswith("figures/power/")]) == 11  # 12 runs, 1 failed
    for fig in report.figures:
        data = fig.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000
    parquet = pd.read_parquet(energy_study / "results.parquet")
    assert {"param.batch_size", "param.precision", "j_per_output_token", "output_tokens_per_s",
            "e2e_p90_s", "mean_power_w"} <= set(parquet.columns)
    assert len(parquet) == 12


def test_report_numbers_match_an_independent_computation(energy_study: Path):
    build(energy_study)
    summary = pd.read_csv(energy_study / "summary.csv").set_index("experiment_id")
    means = raw_means(energy_study)
    for exp_id, m in means.items():
        assert summary.at[exp_id, "j_per_output_token_mean"] == pytest.approx(m["j"], rel=1e-12)
        assert summary.at[exp_id, "output_tokens_per_s_mean"] == pytest.approx(m["tps"], rel=1e-12)
    # The effect of batch size on J/token, by hand: geometric mean over precisions of the
    # ratio of per-experiment means.
    plan = json.loads((energy_study / "plan.json").read_text())
    params = {e["id"]: e["params"] for e in plan["experiments"]}
    by = {(params[e]["batch_size"], params[e]["precision"]): m["j"] for e, m in means.items()}
    want = np.exp(np.mean([np.log(by[(8, p)] / by[(1, p)]) for p in ("fp32", "bf16")]))
    effects = pd.read_csv(energy_study / "effects.csv")
    row = effects[(effects["metric"] == "j_per_output_token")
                  & (effects["parameter"] == "batch_size")].iloc[0]
    assert row["ratio"] == pytest.approx(want, rel=1e-12)
    assert row["rank"] == 1
    # Pareto fronts against a brute-force check.
    pareto = pd.read_csv(energy_study / "pareto.csv")
    for front, x_key, x_max in (("energy_vs_throughput", "tps", True),
                                ("energy_vs_latency_p90", "p90", False)):
        want_front = brute_front({e: (m[x_key], m["j"]) for e, m in means.items()}, x_max)
        got = pareto[(pareto["front"] == front) & pareto["on_front"]]
        assert set(got["experiment_id"]) == want_front, front


def test_report_text_names_the_winner_failures_and_every_warning(energy_study: Path):
    report = build(energy_study)
    md = (energy_study / "report" / "report.md").read_text()
    assert "Synthetic results with known effects." in md
    energy_line = next(line for line in md.splitlines()
                       if line.startswith("- energy per output token"))
    assert re.search(r"#1 batch_size \(5\.\d\dx span", energy_line), energy_line
    assert "## Failed runs" in md
    failed = report.failed
    assert len(failed) == 1 and failed.iloc[0]["run_id"] in md and "agent_exit" in md
    results = list((energy_study / "runs").glob("*/result.json"))
    for path in results:
        assert f"a named warning of {path.parent.name}" in md
    assert "study_incomplete" in md
    assert "## Environment" in md and "nvml_counter" in md
    html = (energy_study / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report.figures)
    assert "<table>" in html and "batch_size" in html


def test_report_without_energy_says_why_and_ranks_throughput(tmp_path: Path):
    study_dir = make_study(
        tmp_path, sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={}, tps_factors={"batch_size": {8: 4.0}, "precision": {"bf16": 1.1}},
        energy=False, cycles=2,
    )
    report = build(study_dir)
    assert report.energy_reason == "no sensor in this test"
    lines = report.headline()
    assert lines[0] == "energy per output token (J): unavailable: no sensor in this test"
    assert lines[1].startswith("throughput (output tokens/s): #1 batch_size")
    assert [f.spec.name for f in report.fronts] == ["throughput_vs_latency_p90"]
    assert "showing the throughput vs p90 latency front instead" in report.fronts[0].note
    md = (study_dir / "report" / "report.md").read_text()
    assert "unavailable: no sensor in this test" in md
    assert "power timeline of 8 of 8 runs" in md
    assert not (study_dir / "report" / "figures" / "power").exists()
    summary = pd.read_csv(study_dir / "summary.csv")
    assert summary["j_per_output_token_mean"].isna().all()


def test_report_on_a_partial_study(tmp_path: Path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 8]}, j_factors={"batch_size": {8: 0.5}},
                           cycles=3, failed=1, pending=2)
    report = build(study_dir)
    assert set(report.failed["status"]) == {"failed", "pending"}
    assert len(report.failed) == 3
    assert any(code == "study_incomplete" for _, code, _ in report.warnings)
    assert not report.effects.ranking.empty


def test_report_refuses_a_folder_that_is_not_a_study(tmp_path: Path):
    with pytest.raises(UserInputError, match="is this a study folder"):
        build(tmp_path)


def test_non_dominated_points():
    x = np.array([1.0, 2.0, 3.0, 2.5])
    y = np.array([1.0, 2.0, 3.0, 1.5])
    # maximise x, minimise y: (1,1), (2.5,1.5), (3,3) are on the front; (2,2) is beaten by (2.5,1.5)
    assert list(non_dominated(x, y, "max", "min")) == [True, False, True, True]


def test_cli_report(energy_study: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "report", str(energy_study)],
        capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Which choice matters most" in proc.stdout
    energy_rows = [line for line in proc.stdout.splitlines() if "energy per output token" in line]
    assert "batch_size" in energy_rows[0] and "5." in energy_rows[0]
    assert "1 runs not done" in proc.stdout


def setup_lines(md: str) -> list[str]:
    """The items of the report's Setup section."""
    section = md.split("## Setup\n\n", 1)[1].split("\n\n## ", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def test_the_setup_of_a_mixed_engine_study_names_everything_an_appendix_needs(tmp_path: Path):
    from _synthetic import ENGINES, PROMPTS_SHA256

    from harness.config.datasets import DatasetFile
    from harness.results import manifest as mio

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"prompt": "p{i}"}}\n' for i in range(8)))
    study_dir = make_study(
        tmp_path, sweep={"backend": ["pytorch", "vllm"], "batch_size": [1, 4]},
        j_factors={"backend": {"vllm": 0.5}}, cycles=2,
        experiment={"workload": {"dataset": "prompts.jsonl", "num_prompts": 8,
                                 "input_tokens": 16, "output_tokens": 8}},
        extra_env={"sensor": {"devices": [{"name": "NVIDIA H200"}]}},
    )
    manifest = mio.load(study_dir)
    manifest.datasets = [DatasetFile(field="workload.dataset", source="prompts.jsonl",
                                     path=str(prompts), sha256="cd" * 32)]
    mio.save(manifest, study_dir)
    build(study_dir, figures=False)
    md = (study_dir / "report" / "report.md").read_text()
    (pytorch, pytorch_version), (vllm, vllm_version) = ENGINES["pytorch"], ENGINES["vllm"]
    assert setup_lines(md) == [
        f"model: models/tiny (a folder: {tmp_path / 'models' / 'tiny'})",
        "precision: fp32",
        f"backend pytorch: {pytorch} {pytorch_version} (4 runs)",
        f"backend vllm: {vllm} {vllm_version} (4 runs)",
        f"workload: prompts file prompts.jsonl ({prompts}, sha256 {'cd' * 32}), its first 8 "
        "non-blank prompts, each cut to at most 16 tokens; 8 output tokens per prompt "
        "(generation goes on past EOS)",
        f"prompts as sent (pytorch, vllm): 8 prompts, 16 input tokens each; token ids sha256 "
        f"{PROMPTS_SHA256}; each measured window went 8 times over them",
        "decoding: greedy (temperature 0)",
        "measurement: idle power for 0 s before the model loads; warmup 1 batch; a measured "
        "window of at least 0.5 s (the prompts repeat until it lasts that long); power sampled "
        "every 100 ms; prefill/decode split measured",
        "hardware: CPU synthetic (2 logical cores); GPUs 1 x NVIDIA H200",
        "runner: local (synthetic); no container image (the agent ran in the host's Python)",
        "execution: 4 experiments x 2 cycles = 8 runs, order interleaved, 0 s between runs",
    ]
    note = md.split("## Setup\n\n", 1)[1].split("\n\n## ", 1)[0].split("\n\n")[-1]
    assert note.startswith("Intervals are wide: some experiments have only 2 done runs.")
    assert "t = 12.71 at n = 2 against 2.78 at n = 5" in note
    assert "the interval at n = 2 is 7.2 times as wide as at n = 5" in note
    assert "The study ran 2 cycles; run at least 3" in note


def test_three_cycles_need_no_note_and_a_single_run_gets_its_own(tmp_path: Path):
    three = make_study(tmp_path / "a", sweep={"batch_size": [1, 8]}, j_factors={}, cycles=3)
    build(three, figures=False)
    assert "Intervals are wide" not in (three / "report" / "report.md").read_text()
    single = make_study(tmp_path / "b", sweep={"batch_size": [1, 8]}, j_factors={}, cycles=1)
    build(single, figures=False)
    assert ("Some experiments have a single done run: no interval can be given for them"
            in (single / "report" / "report.md").read_text())


def test_a_value_past_its_limit_never_reads_as_the_limit():
    from harness.results.wording import past, percent_past

    assert percent_past(0.1004, 0.10) == ("10.04%", "10%")
    assert percent_past(0.104, 0.10) == ("10.4%", "10%")
    assert percent_past(0.25, 0.10) == ("25%", "10%")
    assert percent_past(0.051, 0.05) == ("5.1%", "5%")
    assert past(10.4, 10.0) == ("10.4", "10") and past(12.0, 10.0) == ("12", "10")


def test_a_high_cv_warning_says_how_far_above_the_limit(tmp_path: Path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 8]}, j_factors={}, cycles=3,
                           noise=0.3)
    report = build(study_dir, figures=False)
    high = [message for _, code, message in report.warnings if code == "high_cv"]
    assert high
    for message in high:
        shown = re.search(r"varies ([\d.]+%) \(CV\) over 3 cycles, above the 10% limit$", message)
        assert shown and shown.group(1) != "10%", message


def test_report_warns_when_solo_and_overlapped_runs_are_compared(tmp_path: Path):
    from harness.results import manifest as mio

    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 8]}, j_factors={}, cycles=2)
    manifest = mio.load(study_dir)
    first, second = manifest.runs[0], manifest.runs[1]
    first.overlapped_with, second.overlapped_with = [second.run_id], [first.run_id]
    mio.save(manifest, study_dir)
    report = build(study_dir)
    said = [(code, text) for _, code, text in report.warnings if code == "mixed_overlap"]
    assert len(said) == 1 and said[0][1].startswith("2 of 4 runs overlapped other runs")
    assert "host power and heat were shared" in (study_dir / "report" / "report.md").read_text()
    table = pd.read_csv(study_dir / "results.csv")
    assert table.loc[table["run_id"] == first.run_id, "overlapped_with"].item() == second.run_id

    for rec in manifest.runs:  # no overlap: no warning
        rec.overlapped_with = []
    mio.save(manifest, study_dir)
    assert not [w for w in build(study_dir).warnings if "overlap" in w[1]]
