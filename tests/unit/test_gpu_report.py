"""The report's GPU-settings section on a synthetic power-limit study with a known curve."""

from __future__ import annotations

from pathlib import Path

from _synthetic import make_study

from harness.analysis.report import build

#: energy per token falls with the limit, latency rises (the synthetic study's factors)
J_FACTORS = {300: 0.7, 450: 0.85, 700: 1.0}
TPS_FACTORS = {300: 0.6, 450: 0.85, 700: 1.0}


def test_a_power_limit_sweep_gets_its_curve_table_and_front(tmp_path: Path) -> None:
    study = make_study(tmp_path, sweep={"gpu.power_limit_w": [300, 450, 700]},
                       j_factors={"gpu.power_limit_w": J_FACTORS},
                       tps_factors={"gpu.power_limit_w": TPS_FACTORS}, noise=0.0)
    report = build(study)
    figure = study / "report" / "figures" / "settings_gpu_power_limit_w.png"
    assert figure in report.figures and figure.stat().st_size > 0
    md = (study / "report" / "report.md").read_text()
    section = md.split("## GPU settings: gpu.power_limit_w", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")]
    head, body = [c.strip() for c in rows[0]], rows[1:]
    assert [int(r[0]) for r in body] == [300, 450, 700]
    energy = [float(r[head.index("J/out-tok [95 % CI]")].split()[0]) for r in body]
    assert energy == sorted(energy)  # the synthetic curve: lower limit, less energy per token
    # each limit trades energy for latency: no experiment beats another on both
    assert [r[head.index("on front")].strip() for r in body] == ["yes", "yes", "yes"]
    assert "settings_gpu_power_limit_w.png" in section


def test_no_section_without_a_gpu_axis(tmp_path: Path) -> None:
    study = make_study(tmp_path, sweep={"batch_size": [1, 4]},
                       j_factors={"batch_size": {1: 1.0, 4: 0.5}})
    build(study)
    assert "## GPU settings" not in (study / "report" / "report.md").read_text()
