"""Provenance captured inside the container: software, CPU, and what the sensor reports."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import harness
from harness.source import source_info, source_root


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return None


def cpu_info() -> dict[str, Any]:
    """CPU model, logical cores and frequency governor."""
    model = None
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "model": model or platform.processor() or None,
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "machine": platform.machine(),
    }


def packages() -> dict[str, str]:
    """Every installed distribution and its version."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[str(name).lower()] = dist.version
    return dict(sorted(found.items()))


def git_revision(root: Path | None = None) -> tuple[str | None, str]:
    """The harness source revision and where it came from (env, git checkout, or unknown).

    HARNESS_GIT_REVISION (set by whoever builds or starts the agent; the image build writes
    it, there is no git inside images) wins; otherwise the revision of ``root`` (default: the
    checkout this package runs from) by the one rule in :mod:`harness.source`.
    """
    value = os.environ.get("HARNESS_GIT_REVISION")
    if value:
        return value, "HARNESS_GIT_REVISION"
    root = source_root() if root is None else root
    if not (root / ".git").exists():
        return None, "unknown (not a git checkout and HARNESS_GIT_REVISION is not set)"
    revision = source_info(root).revision
    if revision is None:
        return None, "unknown (git rev-parse failed)"
    return revision, "git checkout"


def torch_info() -> dict[str, Any] | None:
    """CUDA and cuDNN versions torch was built with, if the backend already imported torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    info: dict[str, Any] = {"version": getattr(torch, "__version__", None)}
    version = getattr(torch, "version", None)
    info["cuda_runtime"] = getattr(version, "cuda", None)
    try:
        info["cudnn"] = torch.backends.cudnn.version()
        info["initial_seed"] = int(torch.initial_seed())
    except Exception:  # noqa: BLE001 - provenance is best effort, never fatal
        info.setdefault("cudnn", None)
    return info


def image_build() -> dict[str, str | None]:
    """How the image this runs in was built and the CUDA runtime inside (set by its Dockerfile).

    ``image_build`` is ``offline`` (debootstrap base + wheelhouse) or ``vendor-base``; both
    are None outside a harness image (the local runner).
    """
    return {
        "image_build": os.environ.get("HARNESS_IMAGE_BUILD") or None,
        "image_cuda_runtime": os.environ.get("HARNESS_IMAGE_CUDA") or None,
    }


def capture(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a reviewer needs to know about where the run happened."""
    pkgs = packages()
    revision, revision_source = git_revision()
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "kernel": platform.release(),
        "hostname": platform.node(),
        "harness_version": harness.__version__,
        "harness_git_revision": revision,
        "harness_git_revision_source": revision_source,
        "in_container": Path("/.dockerenv").exists(),
        "cpu": cpu_info(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "packages": pkgs,
        "torch": pkgs.get("torch"),
        "transformers": pkgs.get("transformers"),
        "torch_build": torch_info(),
        **image_build(),
    }
    if extra:
        env.update(extra)
    return env
