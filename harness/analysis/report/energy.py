"""The report's energy section: the GPUs', the host's CPU and DRAM beside them, and the total.

Per experiment, each figure of ``ENERGY_METRICS`` as mean ± U95 (dominant term) over its done
runs, or ``unavailable: REASON`` where no done run has it (docs/methodology.md, section 3.3).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.analysis import plots
from harness.analysis.report.data import Report
from harness.analysis.report.render import Block, Heading, Para, Table
from harness.analysis.report.text import num, plus_minus
from harness.analysis.stats import ENERGY_METRICS, param_columns

#: where each figure's reason for being unknown is, in the results table
REASON_COLUMN = {
    "energy_j": "energy_unavailable_reason",
    "peak_power_w": "energy_unavailable_reason",
    "host_energy_j": "host_energy_unavailable_reason",
    "cpu_energy_j": "host_energy_unavailable_reason",
    "dram_energy_j": "host_energy_unavailable_reason",
}
NO_DRAM = "no DRAM domain: the host's RAPL exposes none"


def _known(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _reasons(done: pd.DataFrame, column: str) -> list[str]:
    if column not in done.columns:
        return []
    return list(dict.fromkeys(str(r) for r in done[column] if _known(r)))


def unavailable_reason(done: pd.DataFrame, metric: str) -> str:
    """Why no done run of an experiment has ``metric`` (its runs' reasons, or a general one)."""
    if done.empty:
        return "no run is done"
    if metric == "total_energy_j":
        energy = done.get("energy_j")
        if energy is None or not energy.map(_known).any():
            return unavailable_reason(done, "energy_j")
        return "the host's energy is unknown: " + unavailable_reason(done, "host_energy_j")
    reasons = _reasons(done, REASON_COLUMN.get(metric, ""))
    if metric == "dram_energy_j" and not reasons:
        reasons = [NO_DRAM]
    return "; ".join(reasons) or "not recorded"


def cell(row: pd.Series, done: pd.DataFrame, metric: str) -> str:
    """One figure of one experiment: mean ± U95 (dominant), or unavailable with the reason."""
    mean = row.get(f"{metric}_mean")
    if not _known(mean):
        return f"unavailable: {unavailable_reason(done, metric)}"
    if _known(row.get(f"{metric}_u95")):
        return plus_minus(mean, row[f"{metric}_u95"], row.get(f"{metric}_u_dominant"))
    return num(mean)


def energy_view(report: Report) -> pd.DataFrame:
    """One row per experiment: its swept values and every energy figure's cell."""
    s, table = report.summary, report.table
    done = table[table["status"] == "done"] if "status" in table.columns else table
    rows = []
    for _, row in s.iterrows():
        runs = done[done["experiment_id"] == row["experiment_id"]]
        out: dict[str, Any] = {"experiment": row["experiment_id"]}
        for col in param_columns(s):
            out[col.removeprefix("param.")] = plots._fmt(row[col])
        for metric, label in ENERGY_METRICS.items():
            out[label] = cell(row, runs, metric)
        rows.append(out)
    return pd.DataFrame(rows)


def energy_section(report: Report) -> list[Block]:
    """The energy heading, what each figure covers, and the table."""
    view = energy_view(report)
    return [
        Heading(2, "Energy: GPUs, host CPU and DRAM, total"),
        Para("Mean over the done runs ± U95 (the dominant term named), as in the summary. "
             "Energy of the measured devices is the GPUs' (on CPU runs, the CPU's RAPL "
             "domains); on GPU runs the host's CPU package and DRAM (RAPL) are read over the "
             "same window, reported apart and added into the total; per-token figures stay "
             "the GPUs'. An unknown figure says why (docs/methodology.md, section 3.3)."),
        Table(view) if not view.empty else Para("No experiment."),
    ]
