"""The study report: tables (CSV/Parquet), effects, Pareto fronts, figures, report.md/html.

Works on finished and partial studies: runs that are not done appear as failed or pending and
every statistic is over the runs that are done.
"""

from __future__ import annotations

import base64
import html
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import pareto, plots
from harness.analysis.effects import EFFECT_METRICS, Effects, main_effects
from harness.analysis.stats import METRICS, energy_unavailable_reason, param_columns, summarize
from harness.analysis.table import load_plan, write_tables
from harness.config.sweep import Plan
from harness.errors import UserInputError
from harness.results.io import read_model
from harness.results.manifest import load as load_manifest
from harness.results.schema import ExperimentResult, Manifest

REPORT_DIR = "report"
FIGURES_DIR = "figures"
HIGH_CV = 0.10  # a metric varying more than this over cycles is flagged

Block = tuple[Any, ...]


@dataclass
class Report:
    """What ``build`` produced: tables, effects, fronts, figures and every note."""

    study_dir: Path
    plan: Plan
    manifest: Manifest
    table: pd.DataFrame
    summary: pd.DataFrame
    effects: Effects
    fronts: list[pareto.Front]
    energy_reason: str | None
    figures: list[Path] = field(default_factory=list)
    skipped_figures: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str, str]] = field(default_factory=list)  # (where, code, message)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def failed(self) -> pd.DataFrame:
        """Runs that are not done: run_id, status, reason, message."""
        rows = [
            {"run_id": r.run_id, "status": r.status, "reason": r.reason or "",
             "message": r.message or ""}
            for r in self.manifest.runs if r.status != "done"
        ]
        return pd.DataFrame(rows, columns=["run_id", "status", "reason", "message"])

    def headline(self) -> list[str]:
        """Lines that say which swept parameter moves each metric most, with intervals."""
        lines = []
        for metric, label in EFFECT_METRICS.items():
            if metric == "j_per_output_token" and self.energy_reason:
                lines.append(f"{label}: unavailable: {self.energy_reason}")
                continue
            ranked = self.effects.ranking[self.effects.ranking["metric"] == metric]
            if ranked.empty:
                continue
            parts = [_rank_text(r) for _, r in ranked.sort_values("rank").iterrows()]
            lines.append(f"{label}: " + "; ".join(parts))
        return lines


def _num(value: Any, spec: str = ".4g") -> str:
    try:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
    except TypeError:
        pass
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def _ci(mean: Any, low: Any, high: Any, spec: str = ".4g") -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if isinstance(low, float) and math.isnan(low):
        return f"{_num(mean, spec)} [n/a]"
    return f"{_num(mean, spec)} [{_num(low, spec)}, {_num(high, spec)}]"


RATIO_SPEC = "#.3g"


def _rank_text(r: pd.Series) -> str:
    return (
        f"#{int(r['rank'])} {r['parameter']} ({_num(r['fold_span'], '#.3g')}x span; "
        f"{r['strongest_level']} vs {r['reference']}: "
        f"x{_ci(r['ratio'], r['ci95_low'], r['ci95_high'], RATIO_SPEC)}"
        f", {int(r['matched_combinations'])} matched)"
    )


def plan_levels(plan: Plan) -> dict[str, list[Any]]:
    """Each swept axis's values in plan order (the order of the study's sweep), None left out."""
    levels: dict[str, list[Any]] = {axis: [] for axis in plan.axes}
    for planned in plan.experiments:
        for axis in plan.axes:
            value = planned.params.get(axis)
            if value is not None and value not in levels[axis]:
                levels[axis].append(value)
    return levels


def _results(study_dir: Path, manifest: Manifest) -> dict[str, ExperimentResult]:
    found = {}
    for rec in manifest.runs:
        path = study_dir / "runs" / rec.run_id / "result.json"
        if rec.status == "done" and path.exists():
            found[rec.run_id] = read_model(path, ExperimentResult)
    return found


def _validity(report: Report, results: dict[str, ExperimentResult]) -> None:
    w = report.warnings
    if report.manifest.state != "complete":
        pending = sum(r.status in ("pending", "running") for r in report.manifest.runs)
        failed = sum(r.status in ("failed", "interrupted") for r in report.manifest.runs)
        w.append(("study", f"study_{report.manifest.state}",
                  f"the study is {report.manifest.state}: {failed} runs failed or interrupted, "
                  f"{pending} not run; statistics cover the done runs only"))
    for text in report.plan.warnings:
        w.append(("plan", "plan_warning", text))
    if report.energy_reason:
        w.append(("study", "energy_unavailable", f"energy unavailable: {report.energy_reason}"))
    for run_id, result in results.items():
        for warning in result.warnings:
            w.append((run_id, warning.code, warning.message))
        if result.warmup.converged is False:
            w.append((run_id, "warmup_not_converged",
                      f"warmup stopped at CV {_num(result.warmup.final_cv)} above its target "
                      f"{_num(result.warmup.target_cv)}"))
        if result.energy.energy_method == "unavailable" and not report.energy_reason:
            w.append((run_id, "energy_unavailable",
                      f"energy unavailable: {result.energy.unavailable_reason}"))
    for _, row in report.summary.iterrows():
        for metric in METRICS:
            cv = row.get(f"{metric}_cv")
            if isinstance(cv, float) and cv > HIGH_CV:
                w.append((row["experiment_id"], "high_cv",
                          f"{metric} varies {cv:.0%} over {int(row[f'{metric}_n'])} cycles "
                          f"(more than {HIGH_CV:.0%})"))
    keys = ("python", "platform", "harness_version")
    seen = {tuple(str(r.environment.get(k)) for k in keys)
            + (str(r.environment.get("cpu", {}).get("model")),) for r in results.values()}
    if len(seen) > 1:
        w.append(("study", "mixed_environments",
                  f"the runs report {len(seen)} different environments (python, platform, "
                  "harness version, CPU); compare them with care"))
    for note in report.effects.notes:
        w.append(("effects", "effect_note", note))


def _environment(report: Report, results: dict[str, ExperimentResult]) -> list[str]:
    m = report.manifest
    lines = [f"harness {m.harness_version}; runner {m.runner} ({m.runner_reason})"]
    images = {(r.image.tag, r.image.id, r.image.digest) for r in m.runs if r.image}
    for tag, image_id, digest in sorted(images, key=str):
        lines.append(f"image {tag}: id {image_id or 'n/a'}, digest {digest or 'n/a'}")
    if not images:
        lines.append("no container image (the agent ran in the host's Python environment)")
    if results:
        first = next(iter(results.values()))
        env = first.environment
        cpu = env.get("cpu") or {}
        lines.append(f"python {env.get('python')} on {env.get('platform')}; "
                     f"in container: {env.get('in_container')}")
        lines.append(f"CPU {cpu.get('model')} ({cpu.get('logical_cores')} logical cores, "
                     f"governor {cpu.get('governor')})")
        lines += engine_lines(results)
        lines.append(f"git revision {env.get('harness_git_revision') or 'n/a'}")
        methods = sorted({r.energy.energy_method for r in results.values()})
        devices = sorted({d.device for r in results.values() for d in r.energy.devices})
        lines.append(f"energy method {', '.join(methods)}; measured devices "
                     f"{', '.join(devices) or 'none'}")
    return lines


def engine_lines(results: dict[str, ExperimentResult]) -> list[str]:
    """One line per backend: its engine and version, torch's version, and how many runs."""
    engines: dict[str, set[str]] = {}
    torch: dict[str, set[str]] = {}
    runs: dict[str, int] = {}
    for result in results.values():
        backend, info = result.experiment.backend, result.backend_info
        packages = result.environment.get("packages") or {}
        engines.setdefault(backend, set()).add(
            f"{info.get('engine', '?')} {info.get('engine_version', '?')}")
        if packages.get("torch"):
            torch.setdefault(backend, set()).add(str(packages["torch"]))
        runs[backend] = runs.get(backend, 0) + 1
    lines = []
    for backend in sorted(engines):
        on = f" on torch {', '.join(sorted(torch[backend]))}" if backend in torch else ""
        lines.append(f"backend {backend}: {', '.join(sorted(engines[backend]))}{on} "
                     f"({runs[backend]} runs)")
    return lines


def _summary_view(report: Report) -> pd.DataFrame:
    s = report.summary
    params = param_columns(s)
    view = pd.DataFrame({"experiment": s["experiment_id"]})
    for col in params:
        view[col.removeprefix("param.")] = s[col].map(plots._fmt)
    view["runs done/planned"] = [f"{d}/{p}" for d, p in zip(s["runs_done"], s["runs_planned"],
                                                             strict=True)]
    for metric, label in METRICS.items():
        view[label + " mean [95% CI]"] = [
            _ci(m, lo, hi) for m, lo, hi in zip(
                s[f"{metric}_mean"], s[f"{metric}_ci95_low"], s[f"{metric}_ci95_high"],
                strict=True)
        ]
    return view


def _effects_view(effects: Effects) -> pd.DataFrame:
    t = effects.table
    rows = []
    for _, r in t.sort_values(["metric", "rank"]).iterrows():
        rows.append({
            "metric": EFFECT_METRICS.get(r["metric"], r["metric"]),
            "rank": int(r["rank"]),
            "parameter": r["parameter"],
            "level vs reference": f"{r['level']} vs {r['reference']}",
            "ratio [95% CI]": _ci(r["ratio"], r["ci95_low"], r["ci95_high"], RATIO_SPEC),
            "matched": int(r["matched_combinations"]),
            "range over matched": f"{_num(r['ratio_min'], RATIO_SPEC)} to "
                                  f"{_num(r['ratio_max'], RATIO_SPEC)}",
        })
    return pd.DataFrame(rows)


def _study_text(study_dir: Path) -> tuple[str, str]:
    from harness.config.load import read_yaml

    try:
        data = read_yaml(study_dir / "study.yaml")
    except UserInputError:
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("name", "")), str(data.get("description", "")).strip()


#: the title's end when any figure comes from simulated GPUs (docs/simulated-gpu.md)
SIMULATED_NOTE = (": energy from SIMULATED GPUs (execution.simulated_gpus), not measured on real "
                  "hardware")


def _blocks(report: Report, results: dict[str, ExperimentResult], rel: dict[Path, str]) -> list[Block]:
    name, description = _study_text(report.study_dir)
    m = report.manifest
    done = sum(r.status == "done" for r in m.runs)
    simulated = any(r.energy.energy_method == "simulated" for r in results.values())
    b: list[Block] = [("h", 1, f"Study {name or m.study}" + (SIMULATED_NOTE if simulated else ""))]
    if description:
        b.append(("p", description))
    b.append(("p", f"State {m.state}: {done} of {len(m.runs)} runs done; "
                   f"{len(report.plan.experiments)} experiments x {report.plan.execution.cycles} "
                   f"cycles (order {report.plan.execution.order}). Swept: "
                   f"{', '.join(report.plan.axes) or 'nothing'}. Folder: {report.study_dir.name}."))
    b.append(("h", 2, "Which choice matters most"))
    b.append(("p", "Main effect of each swept parameter with the others held fixed: the geometric "
                   "mean over matched combinations of the ratio of means, with a 95 % interval "
                   "(delta method, Welch t). The span is how many times the metric changes "
                   "between the parameter's best and worst level."))
    b.append(("ul", report.headline() or ["no effect could be estimated (see warnings)"]))
    view = _effects_view(report.effects)
    if not view.empty:
        b.append(("table", view))
    b.append(("h", 2, "Summary per experiment"))
    b.append(("p", "Mean over cycles with a 95 % t-interval; summary.csv also holds std, CV, n "
                   "and a bootstrap interval when n >= 5."))
    b.append(("table", _summary_view(report)))
    b.append(("h", 2, "Figures"))
    for fig in report.figures:
        b.append(("img", rel[fig], fig.stem.replace("_", " ")))
    if report.skipped_figures:
        b.append(("p", "Figures not drawn:"))
        b.append(("ul", report.skipped_figures))
    b.append(("h", 2, "Pareto fronts"))
    for f in report.fronts:
        if f.note:
            b.append(("p", f.note))
        on = f.points[f.points["on_front"].astype(bool)]
        labels = [plots.experiment_label(r, param_columns(on)) for _, r in on.iterrows()]
        b.append(("p", f"{f.spec.title}: front = " + ("; ".join(labels) or "empty")))
    b.append(("h", 2, "Environment"))
    b.append(("ul", _environment(report, results)))
    b.append(("h", 2, "Failed runs"))
    failed = report.failed
    b.append(("table", failed) if not failed.empty else ("p", "None."))
    b.append(("h", 2, "Validity warnings"))
    if report.warnings:
        b.append(("table", pd.DataFrame(report.warnings, columns=["where", "code", "message"])))
    else:
        b.append(("p", "None."))
    b.append(("h", 2, "Files"))
    b.append(("ul", [f"{k}: {v.relative_to(report.study_dir)}" for k, v in report.files.items()]))
    return b


def _md_cell(value: Any) -> str:
    return _num(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """Render report blocks as Markdown."""
    out: list[str] = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            df: pd.DataFrame = block[1]
            lines = ["| " + " | ".join(map(str, df.columns)) + " |",
                     "|" + "---|" * len(df.columns)]
            lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
                      for row in df.itertuples(index=False)]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:0.85em;margin:1em 0}td,th{border:1px solid
#ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}img{max-width:100%;display:block;
margin:1em 0}"""


def to_html(blocks: list[Block], base: Path) -> str:
    """Render report blocks as a self-contained HTML page (figures embedded as data URIs)."""
    out = ["<!doctype html><html><head><meta charset='utf-8'>",
           f"<title>{html.escape(str(blocks[0][2]))}</title><style>{CSS}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(str(i))}</li>" for i in block[1])
                       + "</ul>")
        elif kind == "table":
            df = block[1]
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(_num(v))}</td>" for v in row) + "</tr>"
                for row in df.itertuples(index=False)
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "img":
            data = base64.b64encode((base / block[1]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(block[2])}' "
                       f"src='data:image/png;base64,{data}'>"
                       f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _figures(report: Report, levels: dict[str, list[Any]], fig_dir: Path) -> None:
    for axis in report.plan.axes:
        col = f"param.{axis}"
        if col not in report.summary.columns or len(levels.get(axis, [])) < 2:
            report.skipped_figures.append(f"effect of {axis}: fewer than 2 levels")
            continue
        safe = axis.replace(".", "_")
        report.figures.append(plots.by_parameter(
            report.table, report.summary, axis, levels[axis], fig_dir / f"effect_{safe}.png",
            report.energy_reason))
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
        target = fig_dir / "power" / f"{rec.run_id}.png"
        why = plots.power_timeline(run_dir, target)
        if why is None:
            report.figures.append(target)
        else:
            skipped.setdefault(why, []).append(rec.run_id)
    total = sum(len(runs) for runs in skipped.values()) + sum(
        f.parent.name == "power" for f in report.figures)
    for why, runs in skipped.items():
        listed = f" ({', '.join(runs)})" if len(runs) <= 5 else ""
        report.skipped_figures.append(
            f"power timeline of {len(runs)} of {total} runs{listed}: {why}")


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
        _figures(report, levels, fig_dir)
    results = _results(study_dir, manifest)
    _validity(report, results)
    files["report (markdown)"] = out / "report.md"
    files["report (html)"] = out / "report.html"
    rel = {f: str(f.relative_to(out)) for f in report.figures}
    blocks = _blocks(report, results, rel)
    out.mkdir(parents=True, exist_ok=True)
    files["report (markdown)"].write_text(to_markdown(blocks), encoding="utf-8")
    files["report (html)"].write_text(to_html(blocks, out), encoding="utf-8")
    return report
