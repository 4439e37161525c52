"""What travels in a bundle besides the results: the study's prompt files and the source.

**Workload.** ``workload_files`` names the prompt files a study's experiments read (each
``workload.dataset`` that is not ``synthetic``); ``carry_workload`` copies each into
``workload/`` (a relative path keeps its path there, an absolute one its name) and records its
SHA-256 and size. Together they may hold WORKLOAD_MAX_BYTES; a file past that is not copied,
and the bundle records its hash and says so. Where a name is found is the caller's resolver
(today: relative to the folder the study ran from).

**Source.** ``carry_source`` writes ``git archive`` of the harness revision the runs recorded
(``environment.harness_git_revision``; the bundling checkout's HEAD when that commit is not in
it) to ``source/harness-REV12.tar.gz``, with the remote it came from, so a reviewer builds
the same harness without reaching the author's machine.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from harness.bundle.archive import size_text
from harness.results.io import sha256_file
from harness.source import git, source_info, source_root

WORKLOAD = "workload"
SOURCE = "source"
WORKLOAD_MAX_BYTES = 1 << 30
SYNTHETIC = "synthetic"


def workload_files(datasets: Iterable[str]) -> list[str]:
    """The files among the values of a study's dataset fields (``FIELDS``), sorted."""
    return sorted({d for d in datasets if d != SYNTHETIC})


def _bundle_name(ref: str, taken: set[str]) -> str:
    path = PurePosixPath(ref)
    rel = path.as_posix() if not path.is_absolute() and ".." not in path.parts else path.name
    name, n = f"{WORKLOAD}/{rel}", 1
    while name in taken:
        n += 1
        name = f"{WORKLOAD}/{n}-{path.name}"
    taken.add(name)
    return name


def carry_workload(refs: Iterable[str], resolve: Callable[[str], Path], root: Path,
                   max_bytes: int = WORKLOAD_MAX_BYTES) -> tuple[list[dict[str, Any]], list[str]]:
    """Copy the named prompt files into ``root/workload``; their entries and notes."""
    entries: list[dict[str, Any]] = []
    notes: list[str] = []
    taken: set[str] = set()
    used = 0
    for ref in refs:
        source = resolve(ref)
        entry: dict[str, Any] = {"ref": ref, "found_at": str(source), "file": None}
        if not source.is_file():
            entry["note"] = f"not found at {source} when the bundle was made"
            notes.append(f"prompt file {ref}: {entry['note']}; the bundle does not carry it")
        else:
            size = source.stat().st_size
            entry.update(bytes=size, sha256=sha256_file(source))
            if used + size > max_bytes:
                entry["note"] = (f"not carried: {size_text(size)} would take the prompt files "
                                 f"past {size_text(max_bytes)}; its SHA-256 is recorded")
                notes.append(f"prompt file {ref}: {entry['note']}")
            else:
                used += size
                entry["file"] = _bundle_name(ref, taken)
                (root / entry["file"]).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, root / entry["file"])
        entries.append(entry)
    return entries, notes


def _has_commit(repo: Path, commit: str) -> bool:
    return git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is not None


def carry_source(revisions: Iterable[str | None], root: Path,
                 repo: Path | None = None) -> dict[str, Any]:
    """``git archive`` the runs' harness revision into ``root/source``; what was written."""
    repo = source_root() if repo is None else repo
    info = source_info(repo)
    seen = sorted({r for r in revisions if r})
    commits = sorted({r.removesuffix("+dirty") for r in seen})
    entry: dict[str, Any] = {"revisions_of_runs": seen, "remote": info.remote, "revision": None,
                             "archive": None, "notes": []}
    if len(commits) > 1:
        entry["notes"].append(f"the runs recorded {len(commits)} harness revisions; the "
                              "archive holds the last of them")
    commit = commits[-1] if commits else None
    if commit is None or not _has_commit(repo, commit):
        entry["notes"].append(
            f"the runs' revision {commit} is not in {repo}; archived its HEAD instead"
            if commit else "the runs recorded no harness revision; archived the bundling "
            "checkout's HEAD")
        commit = info.commit
    if commit is None:
        entry["notes"].append("no git checkout to archive: the source is not in the bundle")
        return entry
    if any(r.endswith("+dirty") for r in seen) or (commit == info.commit and info.dirty):
        entry["notes"].append("the runs' (or this) checkout had uncommitted changes, which "
                              "the archive of the commit does not hold")
    name = f"{SOURCE}/harness-{commit[:12]}.tar.gz"
    (root / SOURCE).mkdir(parents=True, exist_ok=True)
    if git(repo, "archive", "--format=tar.gz", f"--prefix=harness-{commit[:12]}/", "-o",
           str(root / name), commit) is None:
        entry["notes"].append(f"git archive of {commit} failed: the source is not in the bundle")
        return entry
    entry.update(revision=commit, archive=name)
    return entry


def run_revisions(study_dir: Path, run_ids: Iterable[str]) -> list[str | None]:
    """The harness revision each run's result recorded (None where it recorded none)."""
    out: list[str | None] = []
    for run_id in run_ids:
        try:
            data = json.loads((study_dir / "runs" / run_id / "result.json").read_text("utf-8"))
        except (OSError, ValueError):
            continue
        out.append((data.get("environment") or {}).get("harness_git_revision"))
    return out
