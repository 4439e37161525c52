"""Run folders: a fresh one for each attempt; earlier attempts are set aside, never overwritten."""

from __future__ import annotations

from pathlib import Path

from harness.errors import StorageProblem

#: where earlier attempts and dropped runs go: runs/.attempts/RUNID-LABEL[-K]
ATTEMPTS = ".attempts"


def set_aside(study_dir: Path, run_id: str, label: str) -> Path:
    """Move runs/RUNID to runs/.attempts/RUNID-LABEL (or -LABEL-K); its path in the study."""
    run_dir = study_dir / "runs" / run_id
    aside = study_dir / "runs" / ATTEMPTS / f"{run_id}-{label}"
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{run_id}-{label}-{n}")
    try:
        aside.parent.mkdir(parents=True, exist_ok=True)
        run_dir.rename(aside)
    except OSError as e:
        raise StorageProblem(f"cannot move {run_dir} aside: {e.strerror or e}") from e
    return aside.relative_to(study_dir)


def fresh_run_dir(study_dir: Path, run_id: str, attempt: int) -> Path:
    """An empty runs/RUNID for this attempt (what the previous attempt left is set aside)."""
    run_dir = study_dir / "runs" / run_id
    if run_dir.exists() or run_dir.is_symlink():
        set_aside(study_dir, run_id, f"attempt{attempt - 1}")
    try:
        run_dir.mkdir(parents=True)
    except OSError as e:
        raise StorageProblem(f"cannot create {run_dir}: {e.strerror or e}") from e
    return run_dir
