"""Runtimes that execute one agent per run: Docker containers or local processes."""

from __future__ import annotations

from typing import get_args

from harness.config.experiment import Runner
from harness.controller.runtimes.base import Runtime
from harness.controller.runtimes.local import LocalRuntime
from harness.errors import EnvironmentProblem, UserInputError

RUNNERS: tuple[Runner, ...] = get_args(Runner)


def parse_runner(text: str, option: str = "--runner") -> Runner:
    """A runner choice typed on the command line, or UserInputError naming the choices."""
    for runner in RUNNERS:
        if text == runner:
            return runner
    raise UserInputError(f"{option}: expected {', '.join(RUNNERS)}, got {text!r}")


def select_runtime(choice: Runner) -> tuple[Runtime, str]:
    """The runtime for ``auto``/``docker``/``local`` and a sentence saying why it was chosen."""
    if choice == "local":
        return LocalRuntime(), "the local runner was requested"
    from harness.controller.runtimes.docker import DockerRuntime

    if choice == "docker":
        return DockerRuntime(), "the docker runner was requested"
    try:
        return DockerRuntime(), "runner auto: a Docker engine answered"
    except EnvironmentProblem as e:
        return LocalRuntime(), f"runner auto: {e}; using the local runner"
