"""The runtime contract: run one agent for one run folder, return what happened."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from harness.config.datasets import DatasetFile
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, ImageInfo


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
    #: secrets handed to the agent (HF_TOKEN); see harness.secrets
    env: dict[str, str] = field(default_factory=dict)
    #: the files the run reads (prompt files), resolved and hashed on the host
    datasets: list[DatasetFile] = field(default_factory=list)
    #: the NVML library the run's GPUs are read through, host paths (harness.devices)
    gpu_library: GpuLibrary = field(default_factory=GpuLibrary)
    #: host CPUs the agent is pinned to (a cpuset); None: not pinned
    cpus: tuple[int, ...] | None = None
    #: NUMA nodes its memory is bound to (the docker runner's cpuset_mems); None: not bound
    mems: tuple[int, ...] | None = None

    @property
    def system_gpus(self) -> bool:
        """Whether the run computes on the host's real GPUs (not simulated ones)."""
        return self.device == "cuda" and self.gpu_library.kind == "nvml" and bool(self.gpus)


def agent_env(job: RunJob) -> dict[str, str]:
    """The variables every runtime sets for the agent: run id, offline hub, forwarded secrets.

    With real GPUs, CUDA numbers devices in PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID), the
    order of NVML and ``execution.gpus``; CUDA's default order (fastest first) can differ.
    """
    env = {"HARNESS_RUN_ID": job.run_id, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           **job.env}
    if job.system_gpus:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return env


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
    reason: FailureReason | None = None
    log_path: Path | None = None


@dataclass
class Orphan:
    """A container this harness started for a study, found by its labels after the fact."""

    container: Any
    container_id: str
    study: str
    run_id: str
    run_dir: Path
    study_dir: Path
    controller_pid: int | None
    running: bool
    created: str = ""

    def controller_alive(self) -> bool:
        """Whether the controller that started it still runs (its pid, not a reused one)."""
        return process_alive_since(self.controller_pid, self.created)


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_alive_since(pid: int | None, created: str) -> bool:
    """Whether process ``pid`` runs and started before ``created`` (ISO time; not a reused pid)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    boot = _boot_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return False  # dead, not yet reaped by its parent
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") if boot else None
    except (OSError, IndexError, ValueError):
        started = None
    if started is None or not created:
        return True
    try:
        stamp = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return True
    return started <= stamp + 1.0


class Runtime(Protocol):
    """Runs the agent for one run folder (a container per run, or a local process)."""

    name: str

    def model_path_for_agent(self, job: RunJob) -> str:
        """Where the agent will find the model."""
        ...

    def dataset_path_for_agent(self, dataset: DatasetFile) -> str:
        """Where the agent will find a file the study names (read-only)."""
    def gpu_library_for_agent(self, job: RunJob) -> GpuLibrary:
        """The run's GPU library with the paths the agent sees (simulated GPUs' files)."""
        ...

    def prepare(self, image: str) -> ImageInfo | None:
        """Check the image exists (once per study and image); return its identity.

        Raises EngineUnavailable when the engine does not answer.
        """
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

    def find_orphans(self, study: str) -> list[Orphan]:
        """Agents of this study that this runtime can still see, running or exited."""
        ...

    def reap(self, orphan: Orphan) -> tuple[int | None, bytes]:
        """Stop an orphan, take its exit code and log, and remove it."""
        ...

    def reconnect(self) -> None:
        """Check that the engine answers again; raise EngineUnavailable while it does not."""
        ...
