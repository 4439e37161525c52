"""The runtime contract: run one agent for one run folder, return what happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.results.schema import ImageInfo


@dataclass(frozen=True)
class Mount:
    """A host path made visible to the agent."""

    host: Path
    target: str
    read_only: bool = True


@dataclass
class RunJob:
    """Everything a runtime needs to run one agent."""

    run_id: str
    study: str
    run_dir: Path
    image: str | None
    model_host_path: Path | None
    model_ref: str
    hf_cache: Path | None
    gpus: list[int]
    device: str
    timeout_s: float
    backend: str = ""
    mem_limit: str | None = None
    pids_limit: int = 4096
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class RunOutcome:
    """What a runtime observed: exit code, timing, container and image identities."""

    exit_code: int | None
    duration_s: float
    timed_out: bool = False
    killed: bool = False
    oom_killed: bool = False
    container_id: str | None = None
    image: ImageInfo | None = None
    error: str | None = None
    #: a failure the runtime named itself (image_missing, storage_error, interrupted, ...)
    reason: str | None = None
    log_path: Path | None = None


class Runtime(Protocol):
    """Runs the agent for one run folder (a container per run, or a local process)."""

    name: str

    def model_path_for_agent(self, job: RunJob) -> str:
        """Where the agent will find the model."""
        ...

    def prepare(self, image: str) -> ImageInfo | None:
        """Check the image exists (once per study and image); return its identity."""
        ...

    def run(self, job: RunJob) -> RunOutcome:
        """Start the agent, wait for it (up to the timeout), collect its log, clean up."""
        ...

    def stop(self) -> None:
        """Stop the run in flight gracefully and start no more (called on interruption)."""
        ...

    def kill(self) -> None:
        """Kill the run in flight at once and start no more (a second interruption)."""
        ...
