"""Options several commands share, and typed choices that suggest the closest value."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Literal, get_args

import typer

from harness.config.experiment import Device, Runner
from harness.config.problems import suggest

#: what ``--format`` of ``study plan`` writes
PlanFormat = Literal["table", "json", "csv"]


def backend_devices() -> dict[str, tuple[str, ...]]:
    """Each backend's name and the devices it has images for, from the backend registry."""
    from harness.backends import registry

    return {spec.name: tuple(spec.recipe.variants) if spec.recipe else ()
            for spec in registry.specs()}


def choice(values: Sequence[str]) -> Callable[[str], str]:
    """A parser that accepts one of ``values`` and names the closest for a typo."""

    def parse(value: str) -> str:
        if value not in values:
            raise typer.BadParameter(
                f"{value!r} is not one of {', '.join(values)}{suggest(value, values)}")
        return value

    return parse


def choices(literal: object) -> tuple[str, ...]:
    """The values of a ``Literal`` type, sorted."""
    return tuple(sorted(get_args(literal)))


RUNNERS = get_args(Runner)
DEVICES = choices(Device)
BACKENDS = tuple(backend_devices())
#: the backend ``images build`` builds when none is named: the registry's first
DEFAULT_BACKEND = BACKENDS[0]

RunnerOpt = Annotated[
    Runner | None,
    typer.Option("--runner", parser=choice(RUNNERS), metavar="|".join(RUNNERS),
                 help="Where runs execute (default: the study's execution.runner)."),
]
BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", parser=choice(BACKENDS), metavar="|".join(BACKENDS),
                 help=f"The backend (default {DEFAULT_BACKEND})."),
]
DeviceOpt = Annotated[
    Device | None,
    typer.Option("--device", parser=choice(DEVICES), metavar="|".join(DEVICES),
                 help="The device (default cpu)."),
]
DetachOpt = Annotated[
    bool,
    typer.Option("--detach", help="Slurm executor: submit the jobs and return; follow with "
                 "`harness study status DIR`, re-attach with `harness study resume DIR`."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Resume even though the study file changed since it began."),
]
KeepFailedOpt = Annotated[
    bool, typer.Option("--keep-failed", help="On resume, keep failed runs instead of re-running.")
]
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Show every column of the results table, however wide.")
]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output-dir", help="Where the new study folder is created.")
]
StudyDirArg = Annotated[Path, typer.Argument(help="A study results folder.")]
StudyFileArg = Annotated[Path, typer.Argument(help="The study YAML file.")]
