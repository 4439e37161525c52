"""Where this harness's source came from: the git revision, its dirty rule, and the remote.

One rule for every place that records the revision (image labels, the agent's provenance,
bundles): the revision is the checked-out commit, with ``+dirty`` when ``git status`` lists
anything, tracked changes or untracked files that git does not ignore (an untracked module
under harness/ changes what runs as much as an edited one). Pure standard library: the agent
imports it inside images.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import harness

GIT_TIMEOUT_S = 20.0


def source_root() -> Path:
    """The folder holding this package (a git checkout's root when run from one)."""
    return Path(harness.__file__).resolve().parent.parent


def git(root: Path, *args: str) -> str | None:
    """Output of ``git -C root ARGS`` (stripped), or None when git fails or is missing."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False,
            timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass(frozen=True)
class SourceInfo:
    """The revision of a source tree and where it came from."""

    commit: str | None
    dirty: bool | None
    remote: str | None

    @property
    def revision(self) -> str | None:
        """The commit, with ``+dirty`` when the tree differs from it; None outside git."""
        if self.commit is None:
            return None
        return self.commit + ("+dirty" if self.dirty else "")


def source_info(root: Path | None = None) -> SourceInfo:
    """The git commit, dirty state and origin URL of ``root`` (default: this package's tree)."""
    root = source_root() if root is None else Path(root)
    if not (root / ".git").exists():
        return SourceInfo(None, None, None)
    commit = git(root, "rev-parse", "HEAD")
    if not commit:
        return SourceInfo(None, None, None)
    status = git(root, "status", "--porcelain")
    return SourceInfo(
        commit=commit,
        dirty=None if status is None else bool(status),
        remote=git(root, "remote", "get-url", "origin"),
    )
