"""The host's CPU and DRAM energy and the total in results.csv, summary.csv and the report."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from _synthetic import DRAM_W, HOST_REASON, HOST_W, make_study

from harness.analysis.report import build
from harness.analysis.table import NO_HOST_PART

HOST_COLUMNS = ["host_energy_j", "cpu_energy_j", "dram_energy_j", "total_energy_j"]


def study(tmp_path: Path, host: str | None, energy: bool = True) -> Path:
    return make_study(tmp_path, sweep={"batch_size": [1, 8]}, j_factors={"batch_size": {8: 0.5}},
                      cycles=2, host=host, energy=energy)  # type: ignore[arg-type]


def energy_table(md: str) -> list[str]:
    """The rows of the report's energy table."""
    part = md.split("## Energy: GPUs, host CPU and DRAM, total", 1)[1].split("\n## ", 1)[0]
    return [line for line in part.splitlines() if line.startswith("|")]


def test_results_csv_has_host_and_total_energy_with_their_budgets(tmp_path: Path) -> None:
    study_dir = study(tmp_path, "measured")
    build(study_dir, figures=False)
    table = pd.read_csv(study_dir / "results.csv")
    done = table[table["status"] == "done"]
    window_s = done["window_s"]
    assert list(done["cpu_energy_j"]) == pytest.approx(list(HOST_W * window_s))
    assert list(done["dram_energy_j"]) == pytest.approx(list(DRAM_W * window_s))
    assert list(done["host_energy_j"]) == pytest.approx(list((HOST_W + DRAM_W) * window_s))
    assert list(done["total_energy_j"]) == pytest.approx(
        list(done["energy_j"] + done["host_energy_j"]))
    assert done["host_energy_unavailable_reason"].isna().all()
    for column in [*HOST_COLUMNS, "peak_power_w"]:
        assert done[f"{column}_u95"].notna().all(), column
    assert list(done["host_energy_j_u95"]) == pytest.approx(list(0.06 * done["host_energy_j"]))
    assert (done["total_energy_j_u_dominant"] == "host_sensor_accuracy").all()
    summary = pd.read_csv(study_dir / "summary.csv")
    for column in [*HOST_COLUMNS, "peak_power_w", "energy_j"]:
        assert summary[f"{column}_mean"].notna().all(), column
        assert summary[f"{column}_u95"].notna().all(), column


def test_the_report_shows_host_and_total_energy_beside_the_gpus(tmp_path: Path) -> None:
    study_dir = study(tmp_path, "measured")
    md = (build(study_dir, figures=False).files["report (markdown)"]).read_text()
    header, _, *rows = energy_table(md)
    for label in ("energy of the measured devices (J)", "host CPU + DRAM energy (J)",
                  "host CPU package energy (J)", "host DRAM energy (J)", "total energy (J)",
                  "peak power (W)"):
        assert label in header
    assert len(rows) == 2
    summary = pd.read_csv(study_dir / "summary.csv")
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all("±" in c for c in cells[2:]), cells  # every figure with its U95
    mean = summary["total_energy_j_mean"].iloc[0]
    u95, dominant = summary["total_energy_j_u95"].iloc[0], summary["total_energy_j_u_dominant"].iloc[0]
    assert f"{mean:.4g} ± {u95:.2g} ({dominant})" in md


def test_unavailable_host_energy_is_null_with_its_reason_never_0(tmp_path: Path) -> None:
    study_dir = study(tmp_path, "unavailable")
    md = (build(study_dir, figures=False).files["report (markdown)"]).read_text()
    table = pd.read_csv(study_dir / "results.csv")
    done = table[table["status"] == "done"]
    assert done["energy_j"].notna().all()
    for column in HOST_COLUMNS:
        assert done[column].isna().all(), column  # unknown is null, not 0
    assert (done["host_energy_unavailable_reason"] == HOST_REASON).all()
    rows = energy_table(md)[2:]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "±" in cells[2]  # the GPUs' energy is known
        assert cells[3:7] == [f"unavailable: {HOST_REASON}"] * 3 + [
            f"unavailable: the host's energy is unknown: {HOST_REASON}"]


def test_a_result_without_a_host_part_says_why(tmp_path: Path) -> None:
    study_dir = study(tmp_path, None)
    build(study_dir, figures=False)
    done = pd.read_csv(study_dir / "results.csv").query("status == 'done'")
    assert done["host_energy_j"].isna().all() and (
        done["host_energy_unavailable_reason"] == NO_HOST_PART).all()
    assert list(done["total_energy_j"]) == pytest.approx(list(done["energy_j"]))


def test_without_any_energy_every_figure_is_unavailable_with_the_sensors_reason(
        tmp_path: Path) -> None:
    study_dir = study(tmp_path, "unavailable", energy=False)
    md = (build(study_dir, figures=False).files["report (markdown)"]).read_text()
    for row in energy_table(md)[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "unavailable: no sensor in this test"
        assert cells[6] == "unavailable: no sensor in this test"  # the total: the GPUs' reason
        assert cells[3] == f"unavailable: {HOST_REASON}"
    summary = pd.read_csv(study_dir / "summary.csv")
    assert summary["total_energy_j_n"].eq(0).all()
    assert all(math.isnan(v) for v in summary["total_energy_j_mean"])
