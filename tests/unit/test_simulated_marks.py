"""Figures and progress lines of a study on simulated GPUs say so; others do not."""

from __future__ import annotations

import matplotlib.pyplot as plt

from harness.analysis import plots
from harness.analysis.report.blocks import SIMULATED_FIGURE
from harness.cli.render import run_line
from harness.results.schema import RunRecord


def test_a_figure_saved_in_a_marked_block_carries_the_mark(tmp_path):
    marked, plain = plt.figure(), plt.figure()
    with plots.marked(SIMULATED_FIGURE):
        plots.save(marked, tmp_path / "marked.png")
    plots.save(plain, tmp_path / "plain.png")
    assert [t.get_text() for t in marked.texts] == [SIMULATED_FIGURE]
    assert plain.texts == []
    assert "SIMULATED" in SIMULATED_FIGURE


def test_a_done_run_line_says_when_its_energy_is_simulated():
    record = RunRecord(run_id="abc-c1", experiment_id="abc", cycle=1, position=0, status="done",
                       headline={"j_per_output_token": 0.5}, duration_s=1.0)
    assert "SIMULATED" in run_line(record, simulated=True)
    assert "SIMULATED" not in run_line(record)
