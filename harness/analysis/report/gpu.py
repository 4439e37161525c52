"""The report's GPU-settings section: energy per token and latency against a swept ``gpu.*`` axis.

For a study that sweeps the power limit or a locked clock (docs/gpu-control.md): a figure
(energy per output token and p90 latency against the setting, and the energy-latency Pareto
front across its values) and a table with one row per experiment: the setting requested and
applied, energy per token, latency, throughput, mean power, whether it is on the front, and
whether the setting held in every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from harness.analysis import plots
from harness.analysis.pareto import Front
from harness.analysis.report.data import Report, plan_levels
from harness.analysis.report.render import Block, Heading, Image, Para, Table
from harness.analysis.report.text import ci, num
from harness.analysis.stats import param_columns

if TYPE_CHECKING:
    from harness.analysis.report.blocks import Context

#: the front the section draws: energy per token against p90 latency
FRONT = "energy_vs_latency_p90"
FIGURE = "settings_{axis}.png"
#: validity warnings that say a requested setting did not hold
NOT_HELD = ("power_limit_not_held", "sm_clock_not_held", "memory_clock_not_held")


def gpu_axes(axes: list[str], levels: dict[str, list[Any]]) -> list[str]:
    """The swept ``gpu.*`` axes with at least two values."""
    return [a for a in axes if a.startswith("gpu.") and len(levels.get(a, [])) >= 2]


def _front(report: Report) -> Front | None:
    return next((f for f in report.fronts if f.spec.name == FRONT), None)


def draw_settings(report: Report, levels: dict[str, list[Any]], fig_dir: Path) -> None:
    """One figure per swept gpu.* axis (when energy is known; else say why not)."""
    for axis in gpu_axes(report.plan.axes, levels):
        if report.energy_reason is not None:
            report.skipped_figures.append(
                f"energy against {axis}: energy unavailable ({report.energy_reason})")
            continue
        report.figures.append(plots.settings_curve(
            report.table, report.summary, axis, levels[axis], _front(report),
            fig_dir / FIGURE.format(axis=axis.replace(".", "_"))))


def _applied(report: Report) -> dict[str, str]:
    """Per experiment, the power limits and clock locks the host read back (across runs)."""
    seen: dict[str, set[str]] = {}
    for rec in report.manifest.runs:
        if rec.gpu_settings is None:
            continue
        for gpu in rec.gpu_settings.gpus:
            values = gpu.applied.model_dump(exclude_none=True)
            seen.setdefault(rec.experiment_id, set()).update(
                f"{k}={num(v)}" for k, v in values.items())
    return {exp: ", ".join(sorted(v)) for exp, v in seen.items()}


def _not_held(ctx: Context) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in ctx.results.values():
        n = sum(w.code in NOT_HELD for w in result.warnings)
        counts[result.run.experiment_id] = counts.get(result.run.experiment_id, 0) + n
    return counts


def settings_table(report: Report, ctx: Context, axis: str) -> pd.DataFrame:
    """One row per experiment, ordered by the setting: requested and applied, the metrics, the front."""
    s = report.summary
    col = f"param.{axis}"
    others = [c for c in param_columns(s) if c != col]
    front = _front(report)
    on = set(front.points.loc[front.points["on_front"].astype(bool), "experiment_id"]) \
        if front is not None else set()
    applied, missed = _applied(report), _not_held(ctx)
    rows = []
    for _, r in s.sort_values(col, kind="stable").iterrows():
        exp = r["experiment_id"]
        row: dict[str, Any] = {axis: num(r[col]), "applied (read back)": applied.get(exp, "n/a")}
        if others:
            row["other settings"] = plots.experiment_label(r, others)
        row.update({
            "J/out-tok [95 % CI]": ci(r.get("j_per_output_token_mean"),
                                      r.get("j_per_output_token_ci95_low"),
                                      r.get("j_per_output_token_ci95_high")),
            "e2e p90 s": num(r.get("e2e_p90_s_mean")),
            "tok/s": num(r.get("output_tokens_per_s_mean")),
            "mean power W": num(r.get("mean_power_w_mean")),
            "on front": "yes" if exp in on else "no",
            "setting not held (warnings)": missed.get(exp, 0),
            "runs done": f"{r['runs_done']}/{r['runs_planned']}",
        })
        rows.append(row)
    return pd.DataFrame(rows)


def settings_section(report: Report, ctx: Context) -> list[Block]:
    """Energy per token and latency against each swept gpu.* axis (empty when none is swept)."""
    axes = gpu_axes(report.plan.axes, plan_levels(report.plan))
    blocks: list[Block] = []
    for axis in axes:
        blocks.append(Heading(2, f"GPU settings: {axis}"))
        blocks.append(Para(
            f"The host set {axis} on each run's GPUs before its container started, read it "
            "back, and restored the previous value after the run (docs/gpu-control.md). "
            "Energy per output token and p90 end-to-end latency by setting; 'on front': no "
            "other experiment has both lower energy per token and lower p90 latency."))
        blocks.append(Table(settings_table(report, ctx, axis)))
        figure = next((f for f in report.figures
                       if f.name == FIGURE.format(axis=axis.replace(".", "_"))), None)
        if figure is not None and figure in ctx.rel:
            blocks.append(Image(ctx.rel[figure], f"Energy per token and latency against {axis}"))
    return blocks
