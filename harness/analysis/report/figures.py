"""The report's figures: the effect of each swept parameter, the Pareto fronts, power timelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.analysis import plots, serving
from harness.analysis.report.data import Report
from harness.analysis.report.gpu import draw_settings


def draw(report: Report, levels: dict[str, list[Any]], fig_dir: Path) -> None:
    """Draw every figure into ``fig_dir``: effects, fronts, power timelines; say which not."""
    for axis in report.plan.axes:
        col = f"param.{axis}"
        if col not in report.summary.columns or len(levels.get(axis, [])) < 2:
            report.skipped_figures.append(f"effect of {axis}: fewer than 2 levels")
            continue
        safe = axis.replace(".", "_")
        report.figures.append(plots.by_parameter(
            report.table, report.summary, axis, levels[axis], fig_dir / f"effect_{safe}.png",
            report.energy_reason))
    for axis in serving.load_axes(report.plan.axes, levels):
        report.figures.append(serving.load_sweep(
            report.table, report.summary, axis, levels[axis],
            fig_dir / f"serving_{axis.replace('.', '_')}.png", report.energy_reason))
    draw_settings(report, levels, fig_dir)
    for f in report.fronts:
        if f.points.empty:
            report.skipped_figures.append(f"{f.spec.name}: no experiment has both values")
            continue
        report.figures.append(plots.pareto_plot(f, fig_dir / f"pareto_{f.spec.name}.png"))
    skipped: dict[str, list[str]] = {}
    for rec in report.manifest.runs:
        run_dir = report.study_dir / "runs" / rec.run_id
        if rec.status != "done" or not run_dir.exists():
            continue
        serves = report.serving_runs.get(rec.run_id, False)
        target = fig_dir / ("serving" if serves else "power") / f"{rec.run_id}.png"
        why = serving.timeline(run_dir, target) if serves else plots.power_timeline(run_dir, target)
        if why is None:
            report.figures.append(target)
        else:
            skipped.setdefault(f"{'serving' if serves else 'power'} timeline: {why}",
                               []).append(rec.run_id)
    total = sum(len(runs) for runs in skipped.values()) + sum(
        f.parent.name in ("power", "serving") for f in report.figures)
    for why, runs in skipped.items():
        listed = f" ({', '.join(runs)})" if len(runs) <= 5 else ""
        kind, _, reason = why.partition(": ")
        report.skipped_figures.append(
            f"{kind} of {len(runs)} of {total} runs{listed}: {reason}")
