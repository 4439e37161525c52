"""``harness report``, and the summary printed after a study: effects, fronts, failures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from harness.cli.render import Col, Grid, console, emit, fitted, fmt
from harness.results.headline import BY_COLUMN

if TYPE_CHECKING:
    from harness.analysis.report import Report

_EFFECT_HEAD = [Col("metric", "metric", left=True), Col("rank", "rank"),
                Col("parameter", "parameter", left=True)]
_EFFECT_TAIL = [Col("level", "level vs ref", left=True),
                Col("ratio", "ratio [95 % CI]", left=False), Col("span", "span", left=False),
                Col("matched", "matched")]


def report_cmd(
    directory: Annotated[
        Path, typer.Argument(help="A study results folder (finished or not).")
    ],
) -> None:
    """Write summary, effects, Pareto fronts, figures and report.md/html of a study."""
    from harness.analysis.report import build

    show_summary(build(directory))


def _effect_rows(report: Report, *, short: bool) -> list[dict[str, Any]]:
    """One row per ranked effect, its figures as text; metrics by short labels if ``short``."""
    rows = []
    for _, r in report.effects.ranking.iterrows():
        metric = BY_COLUMN.get(r["metric"])
        label = (metric.short if short else metric.label) if metric else r["metric"]
        rows.append({
            "metric": label, "rank": int(r["rank"]),
            "parameter": r["parameter"], "span": f"{r['fold_span']:#.3g}x",
            "level": f"{r['strongest_level']} vs {r['reference']}",
            "ratio": f"x{r['ratio']:#.3g} [{fmt(r['ci95_low'], '#.3g')}, "
                     f"{fmt(r['ci95_high'], '#.3g')}]",
            "matched": int(r["matched_combinations"]),
        })
    return rows


def _effects_grid(report: Report) -> Grid:
    """The ranked effects in the terminal's width: metrics by name, or by short label."""
    for short in (False, True):
        grid = fitted(_effect_rows(report, short=short), _EFFECT_HEAD, [], _EFFECT_TAIL,
                      width=console.width, keep=2, everything="effects.csv has every column")
        if grid.width() <= console.width:
            break
    return grid


def show_summary(report: Report) -> None:
    """Print which swept parameter matters most, the fronts, failures and warnings."""
    from harness.analysis.plots import experiment_label
    from harness.analysis.stats import param_columns

    m = report.manifest
    done = sum(r.status == "done" for r in m.runs)
    console.print(f"Study [bold]{escape(m.study)}[/]: {m.state}, {done}/{len(m.runs)} runs done")
    if report.effects.ranking.empty:
        console.print("no effect could be estimated (see the warnings in the report)")
    else:
        console.print("[bold]Which choice matters most[/] (main effects, others held fixed):")
        emit(_effects_grid(report).lines())
    if report.energy_reason:
        console.print("energy per output token: [yellow]unavailable[/]: "
                      f"{escape(report.energy_reason)}; effects ranked on throughput and latency")
    for front in report.fronts:
        on = front.points[front.points["on_front"].astype(bool)]
        labels = [experiment_label(r, param_columns(on)) for _, r in on.iterrows()]
        console.print(f"Pareto front, {escape(front.spec.title)}: "
                      f"{escape('; '.join(labels) or 'empty')}")
        if front.note:
            console.print(f"  [yellow]note:[/] {escape(front.note)}")
    failed = report.failed
    if not failed.empty:
        console.print(f"[red]{len(failed)} runs not done[/]: " + escape(", ".join(
            f"{r.run_id} ({r.status}{': ' + r.reason if r.reason else ''})"
            for r in failed.itertuples())))
    codes = Counter(code for _, code, _ in report.warnings)
    if codes:
        console.print("validity warnings: " + ", ".join(f"{k} x{v}" for k, v in codes.items())
                      + " (all listed in the report)")
    console.print(f"{len(report.figures)} figures; report: "
                  f"{escape(str(report.files['report (markdown)']))} "
                  f"and {escape(report.files['report (html)'].name)}")
