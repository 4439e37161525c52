"""What a run's container looks like: its mounts, environment, labels, devices and limits.

Pure description of ``containers.create``'s arguments for one run (it creates the host folders
that are mounted, nothing else); starting, waiting for and removing the container is
``runtimes.docker``'s job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.backends import registry
from harness.config.datasets import CONTAINER_ROOT, DatasetFile
from harness.controller.runtimes.base import RunJob, agent_env
from harness.controller.runtimes.hardening import WRITABLE_TARGETS
from harness.devices.affinity import format_cpulist

LABEL_PREFIX = "org.harness"
#: where a container sees the simulated GPUs' settings folder (read-only)
SIMGPU_STATE = "/simgpu-state"

#: docker's ``volumes`` argument: host path -> {"bind": container path, "mode": "ro" | "rw"}
Volumes = dict[str, dict[str, str]]


def run_labels(job: RunJob) -> dict[str, str]:
    """Labels that name the study and run of a container, so strays can be found."""
    return {
        f"{LABEL_PREFIX}.study": job.study,
        f"{LABEL_PREFIX}.run": job.run_id,
        f"{LABEL_PREFIX}.run_dir": str(job.run_dir.resolve()),
        f"{LABEL_PREFIX}.study_dir": str(job.run_dir.resolve().parent.parent),
        f"{LABEL_PREFIX}.controller_pid": str(os.getpid()),
    }


def cache_mount(job: RunJob, root: Path) -> tuple[Path, str] | None:
    """Host folder and container path of the cache of the run's backend, if it keeps one."""
    backend = registry.find(job.backend)
    if backend is None or backend.cache_mount is None:
        return None
    return root / backend.name, backend.cache_mount


def writable_targets(job: RunJob, cache_root: Path) -> set[str]:
    """Container paths allowed to be read-write: /results and the backend's cache mount."""
    mount = cache_mount(job, cache_root)
    return set(WRITABLE_TARGETS) | ({mount[1]} if mount is not None else set())


def dataset_target(dataset: DatasetFile) -> str:
    """/datasets/FIELD/NAME: each file is mounted there read-only, by itself."""
    return f"{CONTAINER_ROOT}/{dataset.field}/{Path(dataset.path).name}"


def _hf_cache(job: RunJob, volumes: Volumes, env: dict[str, str]) -> None:
    """Mount only the hub's model files: the cache's token file stays on the host."""
    if job.hf_cache is None:
        return
    hub = job.hf_cache / "hub"
    if not hub.is_dir() and any(job.hf_cache.glob("models--*")):
        hub = job.hf_cache  # the hub folder itself was given
    source = hub if hub.is_dir() else job.hf_cache
    target = "/hf-cache/hub" if hub.is_dir() else "/hf-cache"
    volumes[str(source)] = {"bind": target, "mode": "ro"}
    env["HF_HOME"] = "/hf-cache"


def mounts(job: RunJob, cache_root: Path) -> tuple[Volumes, dict[str, str]]:
    """The run's volumes and the agent's environment (which names where the mounts are)."""
    volumes: Volumes = {str(job.run_dir.resolve()): {"bind": "/results", "mode": "rw"}}
    env = agent_env(job)
    if job.model_host_path is not None:
        volumes[str(job.model_host_path)] = {"bind": "/model", "mode": "ro"}
    _hf_cache(job, volumes, env)
    for dataset in job.datasets:  # the file alone: nothing else of its folder is visible
        volumes[dataset.path] = {"bind": dataset_target(dataset), "mode": "ro"}
    state = job.gpu_library.state_dir if job.gpu_library.kind == "simulated" else None
    if state is not None:  # simulated GPUs' settings: the agent reads them, never writes
        Path(state).mkdir(parents=True, exist_ok=True)
        volumes[str(Path(state).resolve())] = {"bind": SIMGPU_STATE, "mode": "ro"}
    mount = cache_mount(job, cache_root)
    if mount is not None:  # built engines, reused across runs (BackendSpec.cache_mount)
        host, target = mount
        try:
            host.mkdir(parents=True, exist_ok=True)
            volumes[str(host)] = {"bind": target, "mode": "rw"}
        except OSError:
            pass  # no cache: the agent builds into its own folder, and the run still runs
    return volumes, env


def resources(job: RunJob) -> dict[str, Any]:
    """The run's GPUs (a device request), CPUs, memory nodes and memory limit."""
    import docker.types

    kwargs: dict[str, Any] = {}
    if job.system_gpus:  # simulated GPUs need no device
        kwargs["device_requests"] = [
            docker.types.DeviceRequest(device_ids=[str(g) for g in job.gpus], capabilities=[["gpu"]])
        ]
    if job.cpus is not None:  # its own CPUs when runs share the host (execution.max_parallel)
        kwargs["cpuset_cpus"] = format_cpulist(job.cpus)
    if job.mems is not None:  # the memory nodes local to its GPUs
        kwargs["cpuset_mems"] = format_cpulist(job.mems)
    if job.mem_limit:
        kwargs["mem_limit"] = job.mem_limit
        kwargs["memswap_limit"] = job.mem_limit
    return kwargs


def create_args(job: RunJob, volumes: Volumes, env: dict[str, str],
                user: tuple[int, int]) -> dict[str, Any]:
    """The keyword arguments of ``containers.create(job.image, ...)``: hardened, no network."""
    return {
        "command": ["--config", "/results/config.json"],
        "volumes": volumes,
        "environment": env,
        "network_mode": "none",
        "user": f"{user[0]}:{user[1]}",
        "labels": run_labels(job),
        "working_dir": "/results",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": job.pids_limit,
        "shm_size": "1g",
        "ipc_mode": "private",
        "detach": True,
        **resources(job),
    }
