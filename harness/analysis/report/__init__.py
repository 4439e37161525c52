"""The study report: tables (CSV/Parquet), effects, Pareto fronts, figures, report.md/html.

Works on finished and partial studies: runs that are not done appear as failed or pending and
every statistic is over the runs that are done. The report is built in parts: ``data`` (what
it reads), ``setup`` (what was measured and how), ``blocks`` (the sections, in order),
``validity`` (warnings), ``figures`` and ``render`` (Markdown and HTML).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.analysis import pareto, plots
from harness.analysis.effects import main_effects
from harness.analysis.report.blocks import SIMULATED_FIGURE, blocks
from harness.analysis.report.data import Report, done_results, plan_levels
from harness.analysis.report.figures import draw
from harness.analysis.report.render import to_html, to_markdown
from harness.analysis.report.validity import collect_warnings
from harness.analysis.stats import energy_unavailable_reason, summarize
from harness.analysis.table import load_plan, write_tables
from harness.errors import UserInputError
from harness.results.manifest import load as load_manifest

__all__ = ["REPORT_DIR", "FIGURES_DIR", "Report", "build", "plan_levels"]

REPORT_DIR = "report"
FIGURES_DIR = "figures"


def build(study_dir: Path, *, figures: bool = True) -> Report:
    """Write every table, figure and report.md/html of a study folder; return what was built."""
    study_dir = Path(study_dir)
    if not (study_dir / "manifest.json").exists() or not (study_dir / "plan.json").exists():
        raise UserInputError(f"{study_dir}: no manifest.json and plan.json; is this a study folder?")
    try:
        plan = load_plan(study_dir)
        manifest = load_manifest(study_dir)
        table = write_tables(study_dir)
    except ValueError as e:
        raise UserInputError(str(e)) from e
    levels = plan_levels(plan)
    summary = summarize(table)
    energy_reason = energy_unavailable_reason(table)
    effects = main_effects(table, levels)
    found = pareto.fronts(summary, energy_reason)
    report = Report(study_dir, plan, manifest, table, summary, effects, found, energy_reason)

    files = report.files
    files["results table"] = study_dir / "results.csv"
    files["results table (parquet)"] = study_dir / "results.parquet"
    files["summary"] = study_dir / "summary.csv"
    summary.to_csv(files["summary"], index=False)
    files["effects"] = study_dir / "effects.csv"
    effects.table.to_csv(files["effects"], index=False)
    files["pareto fronts"] = study_dir / "pareto.csv"
    pareto.long_table(found).to_csv(files["pareto fronts"], index=False)

    out = study_dir / REPORT_DIR
    fig_dir = out / FIGURES_DIR
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    if figures:
        methods = table.get("energy_method")
        simulated = methods is not None and bool((methods == "simulated").any())
        with plots.marked(SIMULATED_FIGURE if simulated else None):
            draw(report, levels, fig_dir)
    results = done_results(study_dir, manifest)
    collect_warnings(report, results)
    files["report (markdown)"] = out / "report.md"
    files["report (html)"] = out / "report.html"
    rel = {f: str(f.relative_to(out)) for f in report.figures}
    made = blocks(report, results, rel)
    out.mkdir(parents=True, exist_ok=True)
    files["report (markdown)"].write_text(to_markdown(made), encoding="utf-8")
    files["report (html)"].write_text(to_html(made, out), encoding="utf-8")
    return report
