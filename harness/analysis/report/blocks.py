"""The report's sections, in order: each a function from the report to its blocks.

A new section is one more function in ``SECTIONS``; a new line in an existing one is one more
item where that section builds its list.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.analysis import plots
from harness.analysis.effects import EFFECT_METRICS, Effects
from harness.analysis.report.data import Report
from harness.analysis.report.energy import energy_section
from harness.analysis.report.gpu import settings_section
from harness.analysis.report.render import Block, Heading, Image, Items, Para, Table
from harness.analysis.report.serving import serving_section
from harness.analysis.report.setup import setup_section
from harness.analysis.report.text import RATIO_SPEC, ci, num, plus_minus
from harness.analysis.stats import METRICS, param_columns
from harness.config.load import read_yaml
from harness.errors import UserInputError
from harness.results.schema import ExperimentResult


class Context:
    """What the sections read besides the report: the run results and the figures' paths."""

    def __init__(self, results: dict[str, ExperimentResult], rel: dict[Path, str]) -> None:
        self.results = results
        self.rel = rel


def _study_text(study_dir: Path) -> tuple[str, str]:
    try:
        data = read_yaml(study_dir / "study.yaml")
    except UserInputError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("name", "")), str(data.get("description", "")).strip()


#: the title's end when any figure comes from simulated GPUs (docs/simulated-gpu.md)
#: the line under every figure of a study whose energy comes from simulated GPUs
SIMULATED_FIGURE = "energy from SIMULATED GPUs (execution.simulated_gpus), not measured on hardware"
SIMULATED_NOTE = (": energy from SIMULATED GPUs (execution.simulated_gpus), not measured on real "
                  "hardware")


def title(report: Report, ctx: Context) -> list[Block]:
    """The study's name (and, first, whether its energy comes from simulated GPUs), description, state."""
    name, description = _study_text(report.study_dir)
    m = report.manifest
    done = sum(r.status == "done" for r in m.runs)
    simulated = any(r.energy.energy_method == "simulated" for r in ctx.results.values())
    blocks: list[Block] = [
        Heading(1, f"Study {name or m.study}" + (SIMULATED_NOTE if simulated else ""))]
    if description:
        blocks.append(Para(description))
    blocks.append(Para(
        f"State {m.state}: {done} of {len(m.runs)} runs done; {len(report.plan.experiments)} "
        f"experiments x {report.plan.execution.cycles} cycles (order "
        f"{report.plan.execution.order}). Swept: {', '.join(report.plan.axes) or 'nothing'}. "
        f"Folder: {report.study_dir.name}."))
    return blocks


def setup(report: Report, ctx: Context) -> list[Block]:
    """What was measured, with what, on what, and how (setup.py)."""
    return setup_section(report, ctx.results)


def _effects_view(effects: Effects) -> pd.DataFrame:
    rows = []
    for _, r in effects.table.sort_values(["metric", "rank"]).iterrows():
        rows.append({
            "metric": EFFECT_METRICS.get(r["metric"], r["metric"]),
            "rank": int(r["rank"]),
            "parameter": r["parameter"],
            "level vs reference": f"{r['level']} vs {r['reference']}",
            "ratio [95% CI]": ci(r["ratio"], r["ci95_low"], r["ci95_high"], RATIO_SPEC),
            "matched": int(r["matched_combinations"]),
            "range over matched": f"{num(r['ratio_min'], RATIO_SPEC)} to "
                                  f"{num(r['ratio_max'], RATIO_SPEC)}",
        })
    return pd.DataFrame(rows)


def effects(report: Report, ctx: Context) -> list[Block]:
    """Which choice matters most: the ranked main effects."""
    blocks: list[Block] = [
        Heading(2, "Which choice matters most"),
        Para("Main effect of each swept parameter with the others held fixed: the geometric "
             "mean over matched combinations of the ratio of means, with a 95 % interval "
             "(delta method, Welch t). The span is how many times the metric changes between "
             "the parameter's best and worst level."),
        Items(report.headline() or ["no effect could be estimated (see warnings)"]),
    ]
    view = _effects_view(report.effects)
    if not view.empty:
        blocks.append(Table(view))
    return blocks


def _summary_view(report: Report) -> pd.DataFrame:
    s = report.summary
    view = pd.DataFrame({"experiment": s["experiment_id"]})
    for col in param_columns(s):
        view[col.removeprefix("param.")] = s[col].map(plots._fmt)
    view["runs done/planned"] = [f"{d}/{p}" for d, p in zip(s["runs_done"], s["runs_planned"],
                                                             strict=True)]
    for metric, label in METRICS.items():
        view[label + " mean [95% CI]"] = [
            ci(m, lo, hi) for m, lo, hi in zip(
                s[f"{metric}_mean"], s[f"{metric}_ci95_low"], s[f"{metric}_ci95_high"],
                strict=True)
        ]
        if f"{metric}_u95" in s.columns and s[f"{metric}_u95"].notna().any():
            view[label + " mean ± U95 (dominant)"] = [
                plus_minus(m, u, d) for m, u, d in zip(
                    s[f"{metric}_mean"], s[f"{metric}_u95"], s[f"{metric}_u_dominant"],
                    strict=True)
            ]
    return view


def summary(report: Report, ctx: Context) -> list[Block]:
    """Per experiment: mean and interval of each headline metric."""
    return [Heading(2, "Summary per experiment"),
            Para("Mean over cycles with a 95 % t-interval; summary.csv also holds std, CV, n "
                 "and a bootstrap interval when n >= 5. For energy figures, U95 is the "
                 "expanded uncertainty of the mean: the runs' scatter (or, when smaller, their "
                 "own random budgets averaged down) combined with the sensor's stated accuracy, "
                 "which repeating runs cannot reduce; the largest of the three is named "
                 "(docs/analysis.md, 'Uncertainty of a mean')."),
            Table(_summary_view(report))]


def energy(report: Report, ctx: Context) -> list[Block]:
    """Per experiment: the GPUs' energy, the host's CPU and DRAM beside them, the total, peak power."""
    return energy_section(report)


def serving(report: Report, ctx: Context) -> list[Block]:
    """Serving runs: the load, the steady window, energy per request, latency, goodput."""
    return serving_section(report, ctx.results)


def figures(report: Report, ctx: Context) -> list[Block]:
    """Every figure drawn, and those that were not, with why."""
    blocks: list[Block] = [Heading(2, "Figures")]
    blocks += [Image(ctx.rel[fig], fig.stem.replace("_", " ")) for fig in report.figures]
    if report.skipped_figures:
        blocks += [Para("Figures not drawn:"), Items(report.skipped_figures)]
    return blocks


def fronts(report: Report, ctx: Context) -> list[Block]:
    """The experiments on each Pareto front."""
    blocks: list[Block] = [Heading(2, "Pareto fronts")]
    for f in report.fronts:
        if f.note:
            blocks.append(Para(f.note))
        on = f.points[f.points["on_front"].astype(bool)]
        labels = [plots.experiment_label(r, param_columns(on)) for _, r in on.iterrows()]
        blocks.append(Para(f"{f.spec.title}: front = " + ("; ".join(labels) or "empty")))
    return blocks


def environment_lines(report: Report, results: dict[str, ExperimentResult]) -> list[str]:
    """Harness version, images, Python and platform, CPU, git revision, energy method."""
    m = report.manifest
    lines = [f"harness {m.harness_version}; runner {m.runner} ({m.runner_reason})"]
    images = {(r.image.tag, r.image.id, r.image.digest) for r in m.runs if r.image}
    for tag, image_id, digest in sorted(images, key=str):
        lines.append(f"image {tag}: id {image_id or 'n/a'}, digest {digest or 'n/a'}")
    if not images:
        lines.append("no container image (the agent ran in the host's Python environment)")
    if results:
        env = next(iter(results.values())).environment
        cpu = env.get("cpu") or {}
        lines.append(f"python {env.get('python')} on {env.get('platform')}; "
                     f"in container: {env.get('in_container')}")
        lines.append(f"CPU {cpu.get('model')} ({cpu.get('logical_cores')} logical cores, "
                     f"governor {cpu.get('governor')})")
        lines.append(f"git revision {env.get('harness_git_revision') or 'n/a'}")
        methods = sorted({r.energy.energy_method for r in results.values()})
        devices = sorted({d.device for r in results.values() for d in r.energy.devices})
        lines.append(f"energy method {', '.join(methods)}; measured devices "
                     f"{', '.join(devices) or 'none'}")
    return lines


def environment(report: Report, ctx: Context) -> list[Block]:
    """Where the runs ran, in detail."""
    return [Heading(2, "Environment"), Items(environment_lines(report, ctx.results))]


def failed(report: Report, ctx: Context) -> list[Block]:
    """Runs not done, with their reasons."""
    table = report.failed
    return [Heading(2, "Failed runs"), Table(table) if not table.empty else Para("None.")]


def warnings(report: Report, ctx: Context) -> list[Block]:
    """Every validity warning."""
    body: Block = (Table(pd.DataFrame(report.warnings, columns=["where", "code", "message"]))
                   if report.warnings else Para("None."))
    return [Heading(2, "Validity warnings"), body]


def files(report: Report, ctx: Context) -> list[Block]:
    """The files the report wrote."""
    return [Heading(2, "Files"),
            Items([f"{k}: {v.relative_to(report.study_dir)}" for k, v in report.files.items()])]


Section = Callable[[Report, Context], list[Block]]
SECTIONS: tuple[Section, ...] = (
    title, setup, effects, summary, energy, serving, settings_section, figures, fronts, environment,
    failed, warnings, files,
)


def blocks(report: Report, results: dict[str, ExperimentResult],
           rel: dict[Path, str]) -> list[Block]:
    """Every section's blocks, in order."""
    ctx = Context(results, rel)
    return [block for section in SECTIONS for block in section(report, ctx)]
