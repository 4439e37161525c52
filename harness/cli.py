"""The ``harness`` command line; the only place that turns errors into text and exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import harness
from harness.errors import HarnessError, Interrupted, UserInputError
from harness.results import events
from harness.results.reasons import FailureReason

if TYPE_CHECKING:
    from harness.config.experiment import Runner
    from harness.results.schema import RunRecord

app = typer.Typer(
    name="harness",
    help="Measure the energy, throughput and latency of LLM inference, one container per run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
study_app = typer.Typer(help="Plan, run and inspect studies.", no_args_is_help=True)
images_app = typer.Typer(help="Build the backend images.", no_args_is_help=True)
model_app = typer.Typer(help="Make models for tests and demos.", no_args_is_help=True)
app.add_typer(study_app, name="study")
app.add_typer(images_app, name="images")
app.add_typer(model_app, name="model")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

RunnerOpt = Annotated[
    str | None,
    typer.Option(
        "--runner", help="auto | docker | local (default: the study's execution.runner)"
    ),
]


def _fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"harness {harness.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version.", callback=_print_version,
                     is_eager=True),
    ] = False,
) -> None:
    """Measure the energy, throughput and latency of LLM inference, one container per run."""


@study_app.command("plan")
def study_plan(file: Annotated[Path, typer.Argument(help="The study YAML file.")]) -> None:
    """Validate a study and show its runs without starting anything."""
    from harness.config.load import plan_study

    study, plan = plan_study(file)
    table = Table(title=f"Plan of study {study.name!r}")
    for col in ("#", "run", "experiment", "cycle", "backend", "device", "precision", "batch"):
        table.add_column(col)
    extra = [a for a in plan.axes if a not in ("backend", "device", "precision", "batch_size")]
    for axis in extra:
        table.add_column(axis)
    params = {p.id: p for p in plan.experiments}
    for run in plan.runs:
        p = params[run.experiment_id]
        e = p.experiment
        table.add_row(
            str(run.position + 1), run.run_id, run.experiment_id, str(run.cycle), e.backend,
            e.device, e.precision, str(e.batch_size), *(_fmt(p.params.get(a)) for a in extra),
        )
    console.print(table)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(
        f"{len(plan.experiments)} experiments x {plan.execution.cycles} cycles = "
        f"[bold]{len(plan.runs)} runs[/] (order: {plan.execution.order})"
    )


def _run_line(rec: RunRecord) -> str:
    """One line for a finished run: its headline figures, or why it failed."""
    if rec.status == "done":
        h = rec.headline
        return (
            f"[green]done[/]   {rec.run_id}  {_fmt(h.get('output_tokens_per_s'), '.1f')} tok/s"
            f"  {_fmt(h.get('j_per_output_token'))} J/tok"
            f"  e2e p50 {_fmt(h.get('e2e_p50_s'))} s  ({rec.duration_s:.1f} s)"
        )
    return f"[red]{rec.status}[/] {rec.run_id}  {rec.reason}: {escape(rec.message or '')}"


class _StudyDisplay:
    """A progress bar for the study and one line per run."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.task: Any = None
        self.engine_waiting = False

    def __call__(self, event: events.Event) -> None:
        p = self.progress
        if isinstance(event, events.StudyStarted):
            p.start()
            self.task = p.add_task("study", total=event.total, completed=event.total - event.todo)
        elif isinstance(event, events.RunStarted):
            run, exp = event.run, event.experiment
            p.update(
                self.task,
                description=f"{run.run_id} {exp.backend}/{exp.precision}/bs{exp.batch_size}",
            )
        elif isinstance(event, events.RunFinished):
            p.console.print(_run_line(event.record))
            p.advance(self.task)
            self.engine_waiting = False
        elif isinstance(event, events.Pause):
            p.update(self.task, description=f"pause {event.seconds:.0f} s")
        elif isinstance(event, events.StudyAborted):
            p.console.print(f"[red]{escape(event.message)}[/]")
        elif isinstance(event, events.StudyInterrupted):
            pass  # the command's closing error says it
        else:
            self._notice(event)

    def _notice(self, event: events.Event) -> None:
        """Events that print a line of their own: signals, recovery, a lost engine, notes."""
        p = self.progress
        if isinstance(event, events.SignalReceived):
            if event.force:
                p.console.print(f"[red]{event.signal} again: killing the run in flight[/]")
            else:
                p.console.print(f"[yellow]{event.signal}: stopping the run in flight "
                                "gracefully (press Ctrl+C again to force)[/]")
        elif isinstance(event, events.OrphanFound):
            p.console.print(f"[yellow]found container {event.container} of run "
                            f"{event.run_id} left by a lost controller (pid "
                            f"{event.controller_pid}); stopping and removing it[/]")
        elif isinstance(event, events.RunRecovered):
            p.console.print(f"recovered {event.run_id}: {event.status} "
                            f"({escape(event.message or '')})", highlight=False)
        elif isinstance(event, events.EngineWaiting):
            if not self.engine_waiting:
                p.console.print(f"[yellow]{escape(event.message)}; waiting up to "
                                f"{event.limit_s:.0f} s for it (execution.engine_wait_s)[/]",
                                highlight=False)
                self.engine_waiting = True
            if self.task is not None:
                p.update(self.task, description=f"engine gone {event.waited_s:.0f} s")
        elif isinstance(event, events.Note):
            p.console.print(f"[yellow]note:[/] {escape(event.message)}", highlight=False)

    def close(self) -> None:
        self.progress.stop()


def _results_table(study_dir: Path) -> None:
    from harness.analysis.report import build as build_report

    report = build_report(study_dir)
    table = report.table
    out = Table(title=f"Results: {study_dir}")
    params = [c for c in table.columns if c.startswith("param.")]
    shown = {"run_id": ("run", ""), **{c: (c.removeprefix("param."), "") for c in params}}
    shown.update({
        "status": ("status", ""), "output_tokens_per_s": ("tok/s", ".1f"),
        "j_per_output_token": ("J/out-tok", ".4g"), "e2e_p50_s": ("e2e p50 s", ".3f"),
        "ttft_p50_s": ("TTFT p50 s", ".4f"),
    })
    for col, (header, _) in shown.items():
        out.add_column(header, no_wrap=True, justify="left" if col == "run_id" else "right")
    for _, row in table.iterrows():
        out.add_row(*(
            _fmt(None if _isna(row.get(c)) else row.get(c), spec or ".3g")
            for c, (_, spec) in shown.items()
        ))
    console.print(out)
    _report_summary(report)


def _isna(value: Any) -> bool:
    try:
        return bool(value != value)  # NaN
    except (TypeError, ValueError):
        return False


ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Resume even though the study file changed since it began."),
]
KeepFailedOpt = Annotated[
    bool, typer.Option("--keep-failed", help="On resume, keep failed runs instead of re-running.")
]


def _runner(text: str | None) -> Runner | None:
    """The --runner option as a typed choice (None: the study's own)."""
    from harness.controller.runtimes import parse_runner

    return parse_runner(text) if text is not None else None


def _preamble(head: str, runner: str, why: str, notes: list[str]) -> None:
    """What is about to run, with which runner and why, and the notes before it starts."""
    console.print(head)
    console.print(f"Runner: [bold]{runner}[/] ({escape(why)})")
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _execute(prepared: Any, display: _StudyDisplay) -> None:
    """Run a prepared study, show its results, and exit non-zero unless it completed."""
    from harness.errors import StudyAborted

    run = prepared.run
    _preamble(f"Study [bold]{run.study.name}[/]: {len(run.plan.runs)} runs -> "
              f"{prepared.study_dir}", run.runtime.name, prepared.runner_why, prepared.notes)
    try:
        final = run.execute()
    finally:
        display.close()
    if final.state == "aborted":
        raise StudyAborted(final.message or f"the study in {prepared.study_dir} stopped early")
    _results_table(prepared.study_dir)
    done = sum(r.status == "done" for r in final.runs)
    console.print(f"{done}/{len(final.runs)} runs done; state {final.state}; "
                  f"results in {prepared.study_dir}")
    if final.state != "complete":
        if final.message:
            console.print(escape(final.message), highlight=False)
        raise typer.Exit(1)


@study_app.command("run")
def study_run(
    file: Annotated[Path, typer.Argument(help="The study YAML file.")],
    runner: RunnerOpt = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where study folders are created.")
    ] = None,
) -> None:
    """Run every planned run of a study, one container per run."""
    from harness.controller.lifecycle import start_study

    display = _StudyDisplay()
    prepared = start_study(file, runner=_runner(runner), output_dir=output_dir, observer=display)
    _execute(prepared, display)


@study_app.command("resume")
def study_resume(
    directory: Annotated[Path, typer.Argument(help="A study results folder to continue.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Continue with this (fixed) study file instead of the "
                     "folder's study.yaml; a changed study needs --force."),
    ] = None,
    runner: RunnerOpt = None,
    force: ForceOpt = False,
    keep_failed: KeepFailedOpt = False,
) -> None:
    """Continue a study: done runs are kept, interrupted and failed ones run again."""
    from harness.controller.lifecycle import resume_study

    display = _StudyDisplay()
    prepared = resume_study(directory, file=file, runner=_runner(runner), force=force,
                            keep_failed=keep_failed, observer=display)
    _execute(prepared, display)


@app.command("run")
def run_cmd(
    file: Annotated[Path, typer.Argument(help="A single-experiment YAML file.")],
    runner: Annotated[
        str | None, typer.Option("--runner", help="auto | docker | local (default auto)")
    ] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option("--output-dir", help="Where the run folder EXPID-STAMP is created "
                     "(default results/single)."),
    ] = None,
) -> None:
    """Run one experiment without a study (same agent and runners); exit 4 if it fails."""
    from harness.controller.single import prepare_experiment
    from harness.errors import RunFailure

    single = prepare_experiment(file, runner=_runner(runner), output_dir=output_dir,
                                observer=_StudyDisplay())
    exp = single.experiment
    _preamble(f"Experiment [bold]{exp.id}[/] ({exp.backend}/{exp.precision}/"
              f"bs{exp.batch_size} on {exp.device}) -> {single.run_dir}",
              single.runtime.name, single.runner_why, single.notes)
    record = single.execute()
    console.print(_run_line(record), highlight=False)
    if record.status == "interrupted":
        raise Interrupted(f"interrupted; partial files are in {single.run_dir}")
    if record.status != "done":
        raise RunFailure(f"the run failed ({record.reason}); its log and error.json are in "
                         f"{single.run_dir}", reason=record.reason or FailureReason.AGENT_ERROR)
    console.print(f"result: {single.run_dir / 'result.json'}")


@study_app.command("status")
def study_status(directory: Annotated[Path, typer.Argument(help="A study results folder.")]) -> None:
    """Show the state of a study from its manifest."""
    from harness.results.manifest import load

    try:
        manifest = load(directory)
    except FileNotFoundError as e:
        raise UserInputError(f"{directory}: no manifest.json; is this a study folder?") from e
    except ValueError as e:
        raise UserInputError(str(e)) from e
    table = Table(title=f"Study {manifest.study}: {manifest.state} (runner {manifest.runner})")
    for col in ("#", "run", "status", "attempts", "reason", "tok/s", "J/tok", "duration s"):
        table.add_column(col)
    for rec in manifest.runs:
        table.add_row(
            str(rec.position + 1), rec.run_id, rec.status, str(rec.attempts), rec.reason or "",
            _fmt(rec.headline.get("output_tokens_per_s"), ".1f"),
            _fmt(rec.headline.get("j_per_output_token")), _fmt(rec.duration_s, ".1f"),
        )
    console.print(table)
    counts: dict[str, int] = {}
    for rec in manifest.runs:
        counts[rec.status] = counts.get(rec.status, 0) + 1
    console.print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if manifest.message:
        console.print(escape(manifest.message), highlight=False)
    from harness.results.manifest import StudyLock, is_running

    if is_running(directory):
        console.print(f"a controller is running it ({StudyLock(directory).holder() or 'unknown'})")
    elif manifest.state in ("running", "planned") or any(r.status == "running" for r in manifest.runs):
        console.print(f"[yellow]no controller is running it[/] (it was stopped or killed); "
                      f"continue with: harness study resume {directory}")


@images_app.command("build")
def images_build(
    backend: Annotated[
        str | None, typer.Option(help="pytorch | vllm | tensorrt_llm (default pytorch)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda (default cpu)")] = None,
    study: Annotated[
        Path | None,
        typer.Option(help="Build every default image this study's runs use (not with --backend/--device)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Registry-less: Debian base + host wheelhouse.")
    ] = False,
) -> None:
    """Build backend images through the Docker engine."""
    from harness.config.backends import BACKENDS
    from harness.controller.images import build_image, image_tag, variant

    if study is not None:
        if backend is not None or device is not None:
            raise UserInputError("--study: give either --study or --backend/--device, not both")
        from harness.config.load import plan_study
        from harness.controller.preflight import images_needed

        pairs = images_needed(*plan_study(study))
        if not pairs:
            console.print(f"{study}: every run uses an image named in its `images:` block; nothing to build")
    else:
        backend, device = backend or "pytorch", device or "cpu"
        if backend not in BACKENDS:
            from harness.config.problems import suggest

            raise UserInputError(
                f"--backend: unknown backend {backend!r}{suggest(backend, BACKENDS)}; "
                f"expected one of {', '.join(BACKENDS)}"
            )
        if device not in BACKENDS[backend].devices:
            raise UserInputError(
                f"--device: backend {backend!r} has no {device!r} image "
                f"(devices: {', '.join(BACKENDS[backend].devices)})"
            )
        pairs = [(backend, device)]
    repo_root = Path(__file__).resolve().parent.parent
    for name, dev in pairs:
        registry_less = offline
        if offline and study is not None and not variant(name, dev).offline:
            registry_less = False  # a study may mix CPU images and vendor-based CUDA ones
            console.print(f"{image_tag(name, dev)} has no registry-less recipe: building it from "
                          f"its vendor base {variant(name, dev).base}")
        info = build_image(name, dev, offline=registry_less, repo_root=repo_root,
                           progress=lambda line: console.print(line, markup=False, highlight=False))
        console.print(f"[green]built[/] {info.tag} ({info.id})")


@model_app.command("tiny")
def model_tiny(
    directory: Annotated[Path, typer.Argument(help="Folder to write the model into.")],
    layers: Annotated[int, typer.Option(min=1)] = 2,
    hidden_size: Annotated[int, typer.Option(min=64)] = 256,
    seed: int = 0,
) -> None:
    """Write a small random-weight Llama-style model and tokenizer, fully offline."""
    from harness.models.tiny import write_tiny_model

    path = write_tiny_model(directory, layers=layers, hidden_size=hidden_size, seed=seed)
    console.print(f"wrote a tiny model to {path}")


@app.command("doctor")
def doctor() -> None:
    """Check the Docker engine, NVIDIA runtime, GPUs and images, with a fix for each."""
    from harness.controller.doctor import run_checks

    ok = True
    for check in run_checks():
        mark = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}[check.level]
        console.print(f"{mark:>20}  {check.name}: {check.detail}")
        if check.fix and check.level != "ok":
            console.print(f"{'':>8}fix: {check.fix}")
        ok = ok and check.level != "fail"
    if not ok:
        raise typer.Exit(1)


bundle_app = typer.Typer(help="Make, verify and re-run review bundles.", no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


def _report_summary(report: Any) -> None:
    """Print which swept parameter matters most, the fronts, failures and warnings."""
    from harness.analysis.plots import experiment_label
    from harness.analysis.stats import param_columns

    m = report.manifest
    done = sum(r.status == "done" for r in m.runs)
    console.print(f"Study [bold]{m.study}[/]: {m.state}, {done}/{len(m.runs)} runs done")
    from harness.analysis.effects import EFFECT_METRICS

    table = Table(title="Which choice matters most (main effects, others held fixed)")
    for col in ("metric", "rank", "parameter", "span", "level vs ref", "ratio [95 % CI]",
                "matched"):
        table.add_column(col, justify="right" if col in ("rank", "span", "matched") else "left")
    for _, r in report.effects.ranking.iterrows():
        table.add_row(
            EFFECT_METRICS.get(r["metric"], r["metric"]), str(int(r["rank"])), r["parameter"],
            f"{r['fold_span']:#.3g}x", f"{r['strongest_level']} vs {r['reference']}",
            f"x{r['ratio']:#.3g} [{_fmt(r['ci95_low'], '#.3g')}, {_fmt(r['ci95_high'], '#.3g')}]",
            str(int(r["matched_combinations"])),
        )
    if report.effects.ranking.empty:
        console.print("no effect could be estimated (see the warnings in the report)")
    else:
        console.print(table)
    if report.energy_reason:
        console.print(f"energy per output token: [yellow]unavailable[/]: "
                      f"{escape(report.energy_reason)}; effects ranked on throughput and latency")
    for front in report.fronts:
        on = front.points[front.points["on_front"].astype(bool)]
        labels = [experiment_label(r, param_columns(on)) for _, r in on.iterrows()]
        console.print(f"Pareto front, {escape(front.spec.title)}: "
                      f"{escape('; '.join(labels) or 'empty')}", highlight=False)
        if front.note:
            console.print(f"  [yellow]note:[/] {escape(front.note)}", highlight=False)
    failed = report.failed
    if not failed.empty:
        console.print(f"[red]{len(failed)} runs not done[/]: " + ", ".join(
            f"{r.run_id} ({r.status}{': ' + r.reason if r.reason else ''})"
            for r in failed.itertuples()))
    codes: dict[str, int] = {}
    for _, code, _ in report.warnings:
        codes[code] = codes.get(code, 0) + 1
    if codes:
        console.print("validity warnings: " + ", ".join(f"{k} x{v}" for k, v in codes.items())
                      + " (all listed in the report)")
    console.print(f"{len(report.figures)} figures; report: {report.files['report (markdown)']} "
                  f"and {report.files['report (html)'].name}")


@app.command("report")
def report_cmd(
    directory: Annotated[Path, typer.Argument(help="A study results folder (finished or not).")],
) -> None:
    """Write summary, effects, Pareto fronts, figures and report.md/html of a study."""
    from harness.analysis.report import build

    _report_summary(build(directory))


@bundle_app.command("create")
def bundle_create(
    directory: Annotated[Path, typer.Argument(help="A study results folder.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="The bundle file (default: DIR.tar.gz).")
    ] = None,
    pip_freeze: Annotated[
        bool, typer.Option(help="Also list packages by running pip freeze in each image.")
    ] = True,
) -> None:
    """Write a checksummed, secret-free tar.gz of a study with its report and provenance."""
    from harness.bundle import create

    made = create(directory, output, pip_freeze=pip_freeze)
    for note in made.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if made.redactions:
        names = sorted({name for _, name in made.redactions})
        console.print(f"[yellow]redacted[/] {len(made.redactions)} secret-looking values "
                      f"({', '.join(names)}); see provenance/redactions.txt")
    console.print(f"[green]bundle[/] {made.path} ({made.files} files)")
    console.print(f"check it with: harness bundle verify {made.path}")


@bundle_app.command("verify")
def bundle_verify(file: Annotated[Path, typer.Argument(help="A bundle (.tar.gz).")]) -> None:
    """Check a bundle's checksums, schemas, aggregates and runs; exit 1 on any problem."""
    from harness.bundle import verify

    result = verify(file)
    for check in result.checks:
        console.print(f"[green]ok[/] {escape(check)}")
    console.print(f"[green]verified[/] {file}")


@bundle_app.command("reproduce")
def bundle_reproduce(
    file: Annotated[Path, typer.Argument(help="A bundle (.tar.gz).")],
    runs: Annotated[
        int | None, typer.Option("--runs", min=1, help="Re-run a sample of N runs (default all).")
    ] = None,
    runner: RunnerOpt = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", help="Where the new study folder is created.")
    ] = None,
) -> None:
    """Re-run a bundle's study (or a sample) and compare the new figures with the original."""
    from harness.analysis.plots import experiment_label
    from harness.analysis.stats import param_columns
    from harness.bundle import reproduce

    display = _StudyDisplay()

    def progress(event: str, data: dict[str, Any]) -> None:
        if event == "info":
            console.print(f"Reproducing {data['runs']} of {data['of']} runs -> {data['study_dir']}")
            console.print(f"Runner: [bold]{data['runner']}[/] ({escape(data['why'])})")

    try:
        rep = reproduce(file, runs=runs, runner=_runner(runner), output_dir=output_dir,
                        progress=progress, observer=display)
    finally:
        display.close()
    for note in rep.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    table = Table(title="Original vs reproduced (mean [95 % CI] of the original)")
    for col in ("experiment", "metric", "original", "n", "new", "n new", "new/orig",
                "in CI", "in PI"):
        table.add_column(col, justify="left" if col in ("experiment", "metric") else "right")

    def num(value: Any, spec: str = ".4g") -> str:
        return _fmt(None if _isna(value) else value, spec)

    yes_no = {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}
    comparison = rep.comparison
    unknown = set()
    if not comparison.empty:
        known = comparison[(comparison["original_n"] > 0) | (comparison["new_n"] > 0)]
        unknown = set(comparison["label"]) - set(known["label"])
        comparison = known
    params = param_columns(comparison)
    for _, r in comparison.iterrows():
        orig = f"{num(r.original_mean)} [{num(r.original_ci95_low)}, {num(r.original_ci95_high)}]"
        table.add_row(
            f"{r.experiment_id} ({experiment_label(r, params)})", r.label, orig,
            str(r.original_n), num(r.new_mean), str(r.new_n),
            num(r.ratio_new_to_original, ".3f"),
            yes_no[None if _isna(r.within_original_ci95) else r.within_original_ci95],
            yes_no[None if _isna(r.within_original_pi95) else r.within_original_pi95],
        )
    console.print(table)
    if unknown:
        console.print(f"unavailable in the original and the new runs: {', '.join(sorted(unknown))}")
    console.print("in CI: inside the original 95 % confidence interval of the mean; in PI: inside "
                  "the 95 % prediction interval for a mean of this many new runs")
    console.print(f"{rep.runs_done}/{rep.runs_total} runs done; comparison in "
                  f"{rep.study_dir / 'comparison.csv'}")
    if rep.runs_done < rep.runs_total:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``harness`` console script."""
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 140
    try:
        # standalone: typer prints usage errors (exit 2) and handles Exit itself
        app()
    except HarnessError as e:
        err_console.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]", highlight=False)
        sys.exit(Interrupted.exit_code)

if __name__ == "__main__":
    main()
