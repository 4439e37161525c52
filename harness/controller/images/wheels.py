"""The Python side of an image build: the harness wheel, the wheelhouse and the build context."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from harness.controller.images.recipes import PACKAGE
from harness.errors import EnvironmentProblem

Progress = Callable[[str], None]
#: the python3 of the offline base's Debian release; the wheelhouse is resolved for it
OFFLINE_PYTHON = "3.11"
_STAMP = ".requirements.sha256"
_PACKAGE = PACKAGE


def run_command(cmd: list[str], *, what: str, progress: Progress | None, cwd: Path | None = None,
                env: dict[str, str] | None = None) -> None:
    """Run a command, streaming its output to ``progress``; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as e:
        raise EnvironmentProblem(f"{what}: cannot run {cmd[0]}: {e}") from e
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if progress:
                progress(line)
    if proc.returncode:
        raise EnvironmentProblem(
            f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail)
        )


def digest(data: Any) -> str:
    """SHA-256 of the canonical JSON of ``data`` (build stamps and labels)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def fill_wheelhouse(wheelhouse: Path, reqs: list[str], *, progress: Progress | None = None) -> bool:
    """Download wheels of ``reqs`` for the offline base; return False if already filled."""
    wheelhouse = Path(wheelhouse)
    stamp = wheelhouse / _STAMP
    key = digest({"requirements": reqs, "python": OFFLINE_PYTHON, "platform": sys.platform, "v": 1})
    if stamp.is_file() and stamp.read_text().strip() == key:
        return False
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
    run_command(
        [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--dest", str(wheelhouse), "--only-binary=:all:",
            "--python-version", OFFLINE_PYTHON,
            "-r", str(wheelhouse / "requirements.txt"),
        ],
        what=f"downloading wheels into {wheelhouse}",
        progress=progress,
    )  # fmt: skip
    stamp.write_text(key + "\n")
    return True


#: the time stamped on every file of the harness wheel (1980-01-01, the earliest a zip holds):
#: the same source gives the same wheel bytes, so a rebuild with no change hits the engine's
#: layer cache and gives the same image id instead of a new image for every build
WHEEL_EPOCH = 315532800


def build_wheel(repo_root: Path, dest: Path, *, progress: Progress | None = None) -> Path:
    """Build this package's wheel (no dependencies) from a clean copy of its source."""
    repo_root = Path(repo_root)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="harness-src-") as tmp:
        src = Path(tmp)
        # A copy keeps setuptools' build/ and egg-info out of the repository and stale
        # modules in an old build/ out of the wheel.
        for item in repo_root.iterdir():
            if item.name in ("pyproject.toml", "setup.cfg", "setup.py", "MANIFEST.in") or (
                item.is_file() and item.name.upper().startswith(("README", "LICENSE"))
            ):
                shutil.copy2(item, src / item.name)
        shutil.copytree(
            repo_root / _PACKAGE,
            src / _PACKAGE,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        run_command(
            [
                sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                "--no-deps", "--wheel-dir", str(dest), str(src),
            ],
            what="building the harness wheel",
            progress=progress,
            env={**os.environ, "SOURCE_DATE_EPOCH": str(WHEEL_EPOCH)},
        )  # fmt: skip
    wheels = sorted(dest.glob(f"{_PACKAGE}-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        raise EnvironmentProblem(f"pip built no {_PACKAGE} wheel in {dest}")
    return wheels[-1]


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(src, dst)


def assemble_context(
    context: Path,
    *,
    dockerfile: Path,
    deps_requirements: list[str],
    harness_wheel: Path,
    wheelhouse: Path | None,
) -> Path:
    """Lay out a build context with only the Dockerfile and the wheels the build needs."""
    context = Path(context)
    if context.exists():
        shutil.rmtree(context)
    deps = context / "wheels" / "deps"
    own = context / "wheels" / "harness"
    deps.mkdir(parents=True)
    own.mkdir(parents=True)
    _link(dockerfile, context / "Dockerfile")
    if wheelhouse is not None:
        for wheel in sorted(wheelhouse.glob("*.whl")):
            _link(wheel, deps / wheel.name)
    (deps / "requirements.txt").write_text("\n".join(deps_requirements) + "\n", encoding="utf-8")
    _link(harness_wheel, own / harness_wheel.name)
    return context




class _Chunks:
    """A write-only file that hands what is written to a bounded queue in chunks."""

    def __init__(self, sink: queue.Queue[bytes | BaseException | None], size: int) -> None:
        self._sink, self._size, self._buffer = sink, size, bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        while len(self._buffer) >= self._size:
            self._sink.put(bytes(self._buffer[: self._size]))
            del self._buffer[: self._size]
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._sink.put(bytes(self._buffer))
            self._buffer.clear()


def stream_context(context: Path, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The build context folder as an uncompressed tar, made while the engine reads it.

    The engine receives it as it is written, so no copy of the context (the wheelhouse: GBs
    for a CUDA image) is made on disk first, as ``docker build PATH`` would.
    """
    sink: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)

    def write() -> None:
        try:
            out = _Chunks(sink, chunk_bytes)
            with tarfile.open(fileobj=cast(Any, out), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(Path(context).rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(context)), recursive=False)
            out.flush()
            sink.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the reading side
            sink.put(e)

    threading.Thread(target=write, name="build-context", daemon=True).start()
    while True:
        item = sink.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise EnvironmentProblem(f"cannot send the build context {context}: {item}") from item
        yield item
