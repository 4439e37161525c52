"""The names inside a bundle, shared by create, verify and reproduce."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from harness.errors import HarnessError
from harness.results.reasons import ExitCode

SUMS = "SHA256SUMS"
REVIEWERS = "REVIEWERS.md"
PROVENANCE = "provenance"
REDACTIONS = f"{PROVENANCE}/redactions.txt"
#: folders carried as they are, never rewritten by redaction: image archives, the source
#: archive, and the study's prompt files (refused when they hold a secret; see redact.py)
VERBATIM = ("images/", "source/", "workload/")
BUNDLE_FORMAT = "1.1"  # 1.1: images/, workload/, source/ and models carried
#: files redacted as text (the others are checked for secrets and refused when they hold one)
TEXT_SUFFIXES = frozenset({
    ".json", ".jsonl", ".csv", ".yaml", ".yml", ".log", ".md", ".txt", ".html", ".toml", "",
})


def list_files(root: Path) -> list[str]:
    """Every regular file under root as a POSIX relative path, sorted."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def carried_file(root: Path, rel: object, folder: str) -> Path | None:
    """A file a bundle's provenance.json names under ``folder`` (images/, workload/), or None.

    The name comes from the bundle, which a reviewer did not make: only a plain relative path
    inside that folder is accepted, never an absolute one or one with ``..``.
    """
    if not isinstance(rel, str):
        return None
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or path.parts[:1] != (folder.rstrip("/"),):
        return None
    return root / path


def slug(tag: str) -> str:
    """A folder name for an image tag (harness/IMAGE:cpu -> harness_IMAGE_cpu)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("_") or "image"


class BundleInvalid(HarnessError):
    """A bundle failed verification; each problem says which file and why."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems

    def __str__(self) -> str:
        return super().__str__() + "\n" + "\n".join(f"  - {p}" for p in self.problems)
