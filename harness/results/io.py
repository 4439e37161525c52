"""Atomic writes and validated reads of result files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import StorageProblem

M = TypeVar("M", bound=BaseModel)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a half."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StorageProblem(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp makes 0600; results are for others to read
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as e:  # an interruption must not leave the temp file either
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise StorageProblem(f"cannot write {path}: {e.strerror or e}") from e
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    """Atomically write JSON (a pydantic model or plain data), indented, UTF-8."""
    if isinstance(data, BaseModel):
        text = data.model_dump_json(indent=2)
    else:
        text = json.dumps(data, indent=2, sort_keys=False, default=str)
    atomic_write_text(path, text + "\n")


def read_model(path: Path, model: type[M]) -> M:
    """Read and validate a JSON file into a model; raise ValueError with the reason."""
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (ValidationError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: does not validate as {model.__name__}: {e}") from e


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (never whole into memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
