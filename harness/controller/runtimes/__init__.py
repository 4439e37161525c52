"""Runtimes that execute one agent per run: Docker containers or local processes."""

from __future__ import annotations

from harness.controller.runtimes.base import Runtime
from harness.controller.runtimes.local import LocalRuntime
from harness.errors import EnvironmentProblem


def select_runtime(choice: str) -> tuple[Runtime, str]:
    """The runtime for ``auto``/``docker``/``local`` and a sentence saying why."""
    if choice == "local":
        return LocalRuntime(), "the local runner was requested"
    from harness.controller.runtimes.docker import DockerRuntime

    if choice == "docker":
        return DockerRuntime(), "the docker runner was requested"
    try:
        return DockerRuntime(), "runner auto: a Docker engine answered"
    except EnvironmentProblem as e:
        return LocalRuntime(), f"runner auto: {e}; using the local runner"
