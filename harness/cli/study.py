"""``harness study``: plan, run, resume and inspect studies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from harness.cli.options import (
    DetachOpt,
    ForceOpt,
    KeepFailedOpt,
    OutputDirOpt,
    RunnerOpt,
    StudyDirArg,
    StudyFileArg,
    WideOpt,
)
from harness.cli.plan import study_plan
from harness.cli.render import (
    Col,
    Grid,
    StudyDisplay,
    console,
    emit,
    fitted,
    note,
    param_col,
)
from harness.cli.report import show_summary
from harness.cli.slurm import check_detach, refresh_status, slurm_cols, slurm_study
from harness.errors import StudyAborted, UserInputError
from harness.results.headline import HEADLINE, PER_RUN
from harness.results.reasons import ExitCode

if TYPE_CHECKING:
    from harness.controller.lifecycle import Prepared
    from harness.results.schema import Manifest

app = typer.Typer(help="Plan, run and inspect studies.", no_args_is_help=True)
app.command("plan")(study_plan)

RUN = Col("run_id", "run", spec="", left=True)
STATUS = Col("status", "status", spec="", left=True)
REASON = Col("reason", "reason", spec="", left=True, unknown="")


def metric_cols(metrics: Sequence[Any]) -> list[Col]:
    """A column per headline metric, headed by its short label."""
    return [Col(m.column, m.short, m.spec) for m in metrics]


def show_runs(rows: Sequence[Mapping[str, Any]], axes: Sequence[str], *, wide: bool,
              wide_head: Sequence[Col] = (), wide_tail: Sequence[Col] = ()) -> None:
    """A table of runs: run, swept parameters, status and the headline figures.

    By default it fits the terminal (80 columns when not a terminal); ``wide`` shows every
    column given, however wide.
    """
    params = [param_col(a) for a in axes]
    if wide:
        grid = Grid.of([RUN, *wide_head, *params, STATUS, *wide_tail], rows)
    else:
        grid = fitted(rows, [RUN], params, [STATUS, *metric_cols(PER_RUN)],
                      width=console.width, keep=2)
    emit(grid.lines())


def results_table(study_dir: Path, *, wide: bool) -> None:
    """The results of a study, one row per run, then its summary (effects, fronts, failures)."""
    from harness.analysis.report import build as build_report
    from harness.analysis.report.blocks import SIMULATED_FIGURE

    report = build_report(study_dir)
    console.print(f"[bold]Results[/] of {escape(str(study_dir))}:")
    methods = report.table.get("energy_method")
    if methods is not None and (methods == "simulated").any():
        console.print(f"[bold red]{SIMULATED_FIGURE}[/]")
    show_runs(report.table.to_dict("records"), report.plan.axes, wide=wide,
              wide_head=[Col("experiment_id", "experiment", spec="", left=True),
                         Col("cycle", "cycle", spec="")],
              wide_tail=[REASON, *metric_cols(HEADLINE)])
    show_summary(report)


def preamble(head: str, runner: str, why: str, notes: Sequence[str]) -> None:
    """What is about to run, with which runner and why, and the notes before it starts."""
    console.print(head)
    console.print(f"Runner: [bold]{runner}[/] ({escape(why)})")
    for text in notes:
        note(text)


def _execute(prepared: Prepared, display: StudyDisplay, *, wide: bool,
             detach: bool = False) -> None:
    """Run a prepared study, show its results, and exit non-zero unless it completed."""
    run = prepared.run
    check_detach(prepared, detach)
    if run.study.execution.executor == "slurm":
        try:
            final = slurm_study(prepared, detach=detach)
        finally:
            display.close()
        if detach and final.state == "running":
            console.print(final.message or "", markup=False)
            return
    else:
        preamble(f"Study [bold]{run.study.name}[/]: {len(run.plan.runs)} runs -> "
                 f"{prepared.study_dir}", run.runtime.name, prepared.runner_why, prepared.notes)
        try:
            final = run.execute()
        finally:
            display.close()
    if final.state == "aborted":
        raise StudyAborted(final.message or f"the study in {prepared.study_dir} stopped early")
    results_table(prepared.study_dir, wide=wide)
    done = sum(r.status == "done" for r in final.runs)
    console.print(f"{done}/{len(final.runs)} runs done; state {final.state}; "
                  f"results in {prepared.study_dir}")
    if final.state != "complete":
        if final.message:
            console.print(final.message, markup=False)
        raise typer.Exit(ExitCode.FAILED)


@app.command("run")
def study_run(
    file: StudyFileArg,
    runner: RunnerOpt = None,
    output_dir: OutputDirOpt = None,
    wide: WideOpt = False,
    detach: DetachOpt = False,
) -> None:
    """Run every planned run of a study, one container per run."""
    from harness.controller.lifecycle import start_study

    display = StudyDisplay()
    prepared = start_study(file, runner=runner, output_dir=output_dir, observer=display)
    _execute(prepared, display, wide=wide, detach=detach)


@app.command("resume")
def study_resume(
    directory: Annotated[Path, typer.Argument(help="A study results folder to continue.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Continue with this (fixed) study file instead of the "
                     "folder's copy; a changed study needs --force."),
    ] = None,
    runner: RunnerOpt = None,
    force: ForceOpt = False,
    keep_failed: KeepFailedOpt = False,
    wide: WideOpt = False,
    detach: DetachOpt = False,
) -> None:
    """Continue a study: done runs are kept, interrupted and failed ones run again.

    With the slurm executor it re-attaches to the jobs still queued or running.
    """
    from harness.controller.lifecycle import resume_study

    display = StudyDisplay()
    prepared = resume_study(directory, file=file, runner=runner, force=force,
                            keep_failed=keep_failed, observer=display)
    _execute(prepared, display, wide=wide, detach=detach)


def load_manifest(directory: Path) -> Manifest:
    """A study folder's manifest, or a UserInputError saying what is wrong with the folder."""
    from harness.results.manifest import load

    try:
        return load(directory)
    except FileNotFoundError as e:
        raise UserInputError(f"{directory}: no manifest.json; is this a study folder?") from e
    except ValueError as e:
        raise UserInputError(str(e)) from e


def _planned_params(directory: Path) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The swept axes and each experiment's values, from plan.json (none if unreadable)."""
    from harness.analysis.table import load_plan

    try:
        plan = load_plan(directory)
    except (OSError, ValueError):
        return [], {}
    return plan.axes, {p.id: p.params for p in plan.experiments}


@app.command("status")
def study_status(directory: StudyDirArg, wide: WideOpt = False) -> None:
    """Show the state of a study from its manifest (Slurm jobs that ended are recorded first)."""
    from harness.results.manifest import StudyLock, is_running

    manifest = load_manifest(directory)
    slurm_lines = refresh_status(directory)
    manifest = load_manifest(directory) if slurm_lines or manifest.state == "running" else manifest
    axes, params = _planned_params(directory)
    rows = [{
        **rec.model_dump(include={"run_id", "status", "attempts", "reason", "duration_s"}),
        "position": rec.position + 1, **rec.headline,
        "job": rec.slurm.job_id if rec.slurm else None,
        "node": rec.slurm.node if rec.slurm else None,
        **{f"param.{k}": v for k, v in params.get(rec.experiment_id, {}).items()},
    } for rec in manifest.runs]
    console.print(f"Study [bold]{escape(manifest.study)}[/]: {manifest.state} "
                  f"(runner {manifest.runner})")
    show_runs(rows, axes, wide=wide, wide_head=[Col("position", "#", spec="")],
              wide_tail=[Col("attempts", "attempts", spec=""), REASON, *slurm_cols(manifest),
                         *metric_cols(PER_RUN), Col("duration_s", "duration s", spec=".1f")])
    counts = Counter(rec.status for rec in manifest.runs)
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    failed = [f"{r.run_id} ({r.reason})" for r in manifest.runs if r.status == "failed"]
    if failed and not wide:
        console.print("failed: " + ", ".join(failed), markup=False)
    if manifest.message:
        console.print(manifest.message, markup=False)
    for entry in manifest.gpu_journal:
        console.print(f"GPU settings of run {entry.run_id} ({entry.requested.described()}) on GPUs "
                      f"{', '.join(str(g.index) for g in entry.gpus)} are not restored yet; the "
                      "next start restores them (docs/gpu-control.md)", markup=False)
    for line in slurm_lines:
        console.print(line, markup=False)
    if is_running(directory):
        console.print(f"a controller is running it ({StudyLock(directory).holder() or 'unknown'})",
                      markup=False)
    elif any(r.slurm and r.status == "running" for r in manifest.runs):
        console.print("no controller is attached; finished jobs are recorded by this command; "
                      f"re-attach with: harness study resume {escape(str(directory))}")
    elif manifest.state in ("running", "planned") or counts["running"]:
        console.print("[yellow]no controller is running it[/] (it was stopped or killed); "
                      f"continue with: harness study resume {escape(str(directory))}")
