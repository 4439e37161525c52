"""The study manifest: created from the plan, rewritten atomically on every change."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import harness
from harness.config.sweep import Plan
from harness.results.io import atomic_write_json, read_model
from harness.results.schema import Manifest, RunRecord

MANIFEST = "manifest.json"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def new_manifest(plan: Plan, study_file: Path) -> Manifest:
    """A manifest with every planned run pending."""
    stamp = now_iso()
    return Manifest(
        study=plan.study,
        study_file_sha256=sha256_file(study_file),
        created_at=stamp,
        updated_at=stamp,
        state="planned",
        harness_version=harness.__version__,
        runs=[
            RunRecord(
                run_id=r.run_id, experiment_id=r.experiment_id, cycle=r.cycle,
                position=r.position,
            )
            for r in plan.runs
        ],
    )


def save(manifest: Manifest, study_dir: Path) -> None:
    """Atomically rewrite manifest.json (temp file, fsync, rename)."""
    manifest.updated_at = now_iso()
    atomic_write_json(study_dir / MANIFEST, manifest)


def load(study_dir: Path) -> Manifest:
    """Read and validate a study's manifest."""
    return read_model(study_dir / MANIFEST, Manifest)
