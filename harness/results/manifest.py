"""The study manifest: created from the plan, rewritten atomically on every change."""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

import harness
from harness.config.sweep import Plan
from harness.errors import StorageProblem, UserInputError
from harness.results.io import atomic_write_json, read_model, sha256_file
from harness.results.schema import Manifest, RunRecord

MANIFEST = "manifest.json"
LOCK = ".controller.lock"


def now_iso() -> str:
    """The current UTC time, ISO 8601 with a Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_records(plan: Plan) -> list[RunRecord]:
    """A pending record for every planned run, in plan order."""
    return [
        RunRecord(
            run_id=r.run_id, experiment_id=r.experiment_id, cycle=r.cycle, position=r.position,
        )
        for r in plan.runs
    ]


def new_manifest(plan: Plan, study_file: Path, working_dir: Path | None = None) -> Manifest:
    """A manifest with every planned run pending."""
    stamp = now_iso()
    return Manifest(
        study=plan.study,
        study_file_sha256=sha256_file(study_file),
        created_at=stamp,
        updated_at=stamp,
        state="planned",
        harness_version=harness.__version__,
        working_dir=str(working_dir) if working_dir is not None else None,
        runs=new_records(plan),
    )


def save(manifest: Manifest, study_dir: Path) -> None:
    """Atomically rewrite manifest.json (temp file, fsync, rename)."""
    manifest.updated_at = now_iso()
    atomic_write_json(study_dir / MANIFEST, manifest)


def load(study_dir: Path) -> Manifest:
    """Read and validate a study's manifest."""
    return read_model(study_dir / MANIFEST, Manifest)


class StudyLock:
    """The exclusive right to run a study folder, held by one controller (an flock).

    The kernel drops the lock when its controller dies however it dies, so a free lock on a
    study whose manifest says running means its controller was lost.
    """

    def __init__(self, study_dir: Path) -> None:
        self.path = Path(study_dir) / LOCK
        self._fd: int | None = None

    def _open(self) -> int:
        # read-only: flock needs no write access, and no descriptor open for writing is held
        # for hours (which would, for one, keep the folder's file system from going read-only)
        try:
            return os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o644)
        except OSError as e:
            try:
                return os.open(self.path, os.O_RDONLY)
            except OSError:
                raise StorageProblem(
                    f"cannot open {self.path}: {e.strerror or e}; is the study folder writable?"
                ) from e

    def try_acquire(self, note: bool = True) -> bool:
        """Take the lock if no other controller holds it; False if one does."""
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # its holder removed the file as we opened it: take the new one
        self._fd = fd
        if note:
            try:
                self.path.write_text(
                    f"pid {os.getpid()} on {socket.gethostname()} since {now_iso()}\n",
                    encoding="utf-8",
                )
            except OSError:
                pass  # the lock holds without the note
        return True

    def acquire(self) -> None:
        """Take the lock, or say which controller runs the study."""
        if not self.try_acquire():
            raise UserInputError(
                f"{self.path.parent}: another controller is running this study "
                f"({self.holder() or 'holder unknown'}); wait for it or stop it first"
            )

    def release(self) -> None:
        """Give the lock back (and remove the lock file, so finished studies carry none)."""
        if self._fd is not None:
            try:
                self.path.unlink()
            except OSError:
                pass  # a read-only folder keeps it; a free lock file means nothing
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def holder(self) -> str | None:
        """What the holder wrote into the lock file (pid, host, since when)."""
        try:
            return self.path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def __enter__(self) -> StudyLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_running(study_dir: Path) -> bool:
    """Whether a live controller holds the study folder's lock."""
    lock = StudyLock(study_dir)
    if not lock.path.exists():
        return False
    try:
        free = lock.try_acquire(note=False)
    except StorageProblem:
        return False
    lock.release()
    return not free


def next_step(manifest: Manifest, study_dir: Path) -> str:
    """What to do to finish a study: resume it, or first fix the input that its runs failed on."""
    inputs = sorted({r.reason for r in manifest.runs
                     if r.status != "done" and r.reason is not None and r.reason.is_input_problem})
    if inputs:
        return (f"runs failed for input reasons ({', '.join(inputs)}), which a plain resume "
                f"repeats: fix the study file (or what it names), then continue with: "
                f"harness study resume {study_dir} --file FIXED.yaml --force "
                f"(or start it anew: harness study run FIXED.yaml)")
    return f"continue with: harness study resume {study_dir}"
