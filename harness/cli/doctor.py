"""``harness doctor`` (is this machine ready?) and ``harness model`` (models for tests and demos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from harness.cli.render import console
from harness.results.reasons import ExitCode

model_app = typer.Typer(help="Make models for tests and demos.", no_args_is_help=True)

_MARKS = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]fail[/]"}


def doctor() -> None:
    """Check the Docker engine, NVIDIA runtime, GPUs and images, with a fix for each."""
    from harness.controller.doctor import run_checks

    ok = True
    for check in run_checks():
        console.print(f"{_MARKS[check.level]:>20}  {escape(check.name)}: {escape(check.detail)}")
        if check.fix and check.level != "ok":
            console.print(f"{'':>8}fix: {escape(check.fix)}")
        ok = ok and check.level != "fail"
    if not ok:
        raise typer.Exit(ExitCode.FAILED)


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
    console.print(f"wrote a tiny model to {escape(str(path))}")
