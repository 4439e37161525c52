"""``harness bundle``: make, verify and re-run review bundles."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from harness.cli.options import OutputDirOpt, RunnerOpt, StudyDirArg
from harness.cli.render import Col, StudyDisplay, console, emit, fitted, fmt, missing, note
from harness.errors import UserInputError
from harness.results.reasons import ExitCode

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(help="Make, verify and re-run review bundles.", no_args_is_help=True)
BundleArg = Annotated[Path, typer.Argument(help="A bundle (.tar.gz).")]

_COMPARE_HEAD = [Col("experiment", "experiment", left=True), Col("label", "metric", left=True)]
_COMPARE_TAIL = [Col("original", "original", left=False), Col("new", "new", ".4g"),
                 Col("ratio", "new/orig", ".3f"), Col("in_ci", "in CI"), Col("in_pi", "in PI"),
                 Col("original_n", "n"), Col("new_n", "n new")]


@app.command("create")
def bundle_create(
    directory: StudyDirArg,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="The bundle file (default: DIR.tar.gz).")
    ] = None,
    pip_freeze: Annotated[
        bool, typer.Option(help="Also list packages by running pip freeze in each image.")
    ] = True,
    with_images: Annotated[
        bool, typer.Option("--with-images",
                           help="Also carry each image the runs used (docker save, gzip).")
    ] = False,
) -> None:
    """Write a checksummed, secret-free tar.gz of a study with its report and provenance."""
    from harness.bundle import create
    from harness.bundle.archive import size_text

    began = time.monotonic()
    made = create(directory, output, pip_freeze=pip_freeze, with_images=with_images)
    for text in made.notes:
        note(text)
    if made.redactions:
        names = sorted({name for _, name in made.redactions})
        console.print(f"[yellow]redacted[/] {len(made.redactions)} secret-looking values "
                      f"({escape(', '.join(names))}); see provenance/redactions.txt")
    console.print(f"[green]bundle[/] {escape(str(made.path))} ({made.files} files, "
                  f"{size_text(made.bytes)}, {time.monotonic() - began:.1f} s)")
    console.print(f"check it with: harness bundle verify {escape(str(made.path))}")


@app.command("verify")
def bundle_verify(file: BundleArg) -> None:
    """Check a bundle's checksums, schemas, aggregates and runs; exit 1 on any problem."""
    from harness.bundle import verify

    began = time.monotonic()
    result = verify(file)
    for check in result.checks:
        console.print(f"[green]ok[/] {escape(check)}")
    console.print(f"[green]verified[/] {escape(str(file))} ({time.monotonic() - began:.1f} s)")


def _yes_no(value: Any) -> str:
    return "n/a" if missing(value) else ("yes" if value else "no")


def _comparison_rows(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per experiment and metric that either side measured."""
    from harness.analysis.plots import experiment_label
    from harness.analysis.stats import param_columns

    params = param_columns(comparison)
    rows = []
    for _, r in comparison.iterrows():
        rows.append({
            "experiment": f"{r.experiment_id} ({experiment_label(r, params)})",
            "label": r.label, "original_n": r.original_n, "new_n": r.new_n, "new": r.new_mean,
            "original": f"{fmt(r.original_mean, '.4g')} [{fmt(r.original_ci95_low, '.4g')}, "
                        f"{fmt(r.original_ci95_high, '.4g')}]",
            "ratio": r.ratio_new_to_original, "in_ci": _yes_no(r.within_original_ci95),
            "in_pi": _yes_no(r.within_original_pi95),
        })
    return rows


def _model_map(pairs: list[str]) -> dict[str, Path]:
    """--model NAME=PATH options as a mapping (UserInputError for one without '=')."""
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise UserInputError(f"--model {pair!r}: expected NAME=PATH, NAME as the study "
                                 "names the model")
        out[name] = Path(path)
    return out


def _identity_lines(comparison: pd.DataFrame) -> list[str]:
    """One line per experiment's images (recorded vs used id) and model check."""
    if comparison.empty or "image_id" not in comparison.columns:
        return []
    lines = []
    per_exp = comparison.drop_duplicates("experiment_id")
    for _, r in per_exp.iterrows():
        same = {True: "the same image", False: "A DIFFERENT IMAGE"}.get(r.same_image, "n/a")
        lines.append(f"{r.experiment_id}: image {r.image_id or 'none'} (recorded "
                     f"{r.original_image_id or 'none'}: {same}); model {r.model_check}")
    return lines


@app.command("reproduce")
def bundle_reproduce(
    file: BundleArg,
    runs: Annotated[
        int | None, typer.Option("--runs", min=1, help="Re-run a sample of N runs (default all).")
    ] = None,
    runner: RunnerOpt = None,
    output_dir: OutputDirOpt = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", metavar="NAME=PATH",
                     help="Where the model the study names NAME is on this machine (repeatable)."),
    ] = None,
    model_root: Annotated[
        Path | None,
        typer.Option("--model-root", help="Look for the study's model folders under this folder."),
    ] = None,
    accept_model_mismatch: Annotated[
        bool, typer.Option("--accept-model-mismatch",
                           help="Run even if a model differs from the bundle's fingerprint "
                           "(recorded in comparison.csv).")
    ] = False,
) -> None:
    """Re-run a bundle's study (or a sample) and compare the new figures with the original."""
    from harness.bundle import reproduce
    from harness.bundle.reproduce import ReviewerModels

    models = ReviewerModels(_model_map(model or []), model_root, accept_model_mismatch)
    began = time.monotonic()
    display = StudyDisplay()  # prints reproduce's notes as they come, before the runs
    try:
        rep = reproduce(file, runs=runs, runner=runner, output_dir=output_dir, observer=display,
                        models=models)
    finally:
        display.close()
    if display.stopped:
        console.print(f"[red]stopped:[/] {escape(display.stopped)}")
    comparison = rep.comparison
    unknown: set[str] = set()
    if not comparison.empty:
        known = comparison[(comparison["original_n"] > 0) | (comparison["new_n"] > 0)]
        unknown = set(comparison["label"]) - set(known["label"])
        comparison = known
    console.print("[bold]Original vs reproduced[/] (mean [95 % CI] of the original):")
    emit(fitted(_comparison_rows(comparison), _COMPARE_HEAD, [], _COMPARE_TAIL,
                width=console.width, keep=3,
                everything=f"{rep.study_dir / 'comparison.csv'} has every column").lines())
    if unknown:
        console.print(f"unavailable in the original and the new runs: {', '.join(sorted(unknown))}")
    console.print("in CI: inside the original 95 % confidence interval of the mean; in PI: inside "
                  "the 95 % prediction interval for a mean of this many new runs")
    for line in _identity_lines(rep.comparison):
        console.print(escape(line))
    console.print(f"{rep.runs_done}/{rep.runs_total} runs done in "
                  f"{time.monotonic() - began:.1f} s; comparison in "
                  f"{escape(str(rep.study_dir / 'comparison.csv'))}")
    if rep.runs_done < rep.runs_total:
        raise typer.Exit(ExitCode.FAILED)
