"""The host folder where backends keep what they build (TensorRT engines, say)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The harness's cache folder ($XDG_CACHE_HOME/harness, else ~/.cache/harness)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


def backend_cache(name: str, root: Path | None = None) -> Path:
    """The cache folder of one backend (mounted at its spec's ``cache_mount`` in containers)."""
    return (cache_root() if root is None else root) / name
