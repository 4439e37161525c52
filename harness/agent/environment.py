"""Provenance captured inside the container: software, CPU, and what the sensor reports."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import harness


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
        name = dist.metadata.get("Name")
        if name:
            found[name.lower()] = dist.version
    return dict(sorted(found.items()))


def capture(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a reviewer needs to know about where the run happened."""
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "harness_version": harness.__version__,
        "harness_git_revision": os.environ.get("HARNESS_GIT_REVISION"),
        "in_container": Path("/.dockerenv").exists(),
        "cpu": cpu_info(),
        "packages": packages(),
    }
    env["torch"] = env["packages"].get("torch")
    env["transformers"] = env["packages"].get("transformers")
    if extra:
        env.update(extra)
    return env
