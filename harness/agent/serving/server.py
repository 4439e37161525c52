"""The engine's server as a child of the agent: started, waited for, watched, always stopped.

The server runs in the agent's process group, so whatever stops the run's group (the local
runner's SIGTERM and SIGKILL, a container's end) stops it too; the Linux parent-death signal
kills it if the agent dies alone. The agent stops it itself on every way out of serving mode
(``with Server(...)``: success, failure, KeyboardInterrupt from SIGTERM): SIGTERM to the server
and every process it started, then SIGKILL to whatever is left after ``STOP_GRACE_S``. Its
output goes to ``server.log`` in the run folder, kept on failure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from harness.agent.serving.client import request
from harness.backends.spec import ServerLaunch
from harness.errors import RunFailure
from harness.results.reasons import FailureReason

LOOPBACK = "127.0.0.1"
#: how long the server may take to stop after SIGTERM before it is killed
STOP_GRACE_S = 15.0
#: how often readiness is probed
READY_POLL_S = 0.5
#: lines of the server's log quoted in a failure's message
LOG_TAIL_LINES = 15
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _die_with_agent() -> None:
    """In the server: SIGKILL when the agent dies (Linux), so no server outlives its run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every process below ``pid`` alive now (from /proc: each process's parent)."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir() if proc.is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="utf-8")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, for a failure's message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


class Server:
    """One server process: ``start``, ``wait_ready``, ``exited``, ``stop`` (also on exit)."""

    def __init__(self, launch: ServerLaunch, folder: Path, log_path: Path, port: int) -> None:
        self.launch = launch
        self.folder = folder
        self.log_path = log_path
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Write the launch's files and start the server, its output into the log."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.launch.files.items():
            (self.folder / name).write_text(text, encoding="utf-8")
        self._log = self.log_path.open("ab")
        self._log.write(f"[agent] starting: {' '.join(self.launch.argv)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                list(self.launch.argv), stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.folder, env={**os.environ, **self.launch.env},
                preexec_fn=_die_with_agent,  # noqa: PLW1509 - no thread holds a lock yet
            )
        except OSError as e:
            raise RunFailure(f"the server could not be started ({self.launch.argv[0]}): {e}",
                             reason=FailureReason.SERVER_NOT_READY) from e

    @property
    def pid(self) -> int | None:
        """The server's process id (None before it starts)."""
        return self._proc.pid if self._proc is not None else None

    def exited(self) -> int | None:
        """The server's exit status if it has ended, else None."""
        return self._proc.poll() if self._proc is not None else None

    def _why_not_ready(self, what: str) -> RunFailure:
        return RunFailure(f"the server {what}; the last lines of {self.log_path.name}:\n"
                          f"{log_tail(self.log_path)}", reason=FailureReason.SERVER_NOT_READY)

    def wait_ready(self, health_path: str, timeout_s: float) -> float:
        """Probe ``health_path`` until it answers 200; return the seconds it took.

        RunFailure(server_not_ready) when the server exits first or ``timeout_s`` passes.
        """
        start = time.perf_counter()
        while True:
            code = self.exited()
            if code is not None:
                raise self._why_not_ready(f"exited with status {code} before it was ready")
            with contextlib.suppress(OSError, asyncio.TimeoutError, ValueError):
                got = asyncio.run(asyncio.wait_for(
                    request(LOOPBACK, self.port, "GET", health_path), timeout=5.0))
                if got.status == 200:
                    return time.perf_counter() - start
            if time.perf_counter() - start > timeout_s:
                raise self._why_not_ready(
                    f"did not answer {health_path} with 200 within {timeout_s:g} s (serving."
                    "ready_timeout_s)")
            time.sleep(READY_POLL_S)

    def stop(self) -> int | None:
        """Stop the server and everything it started; return its exit status."""
        proc, self._proc = self._proc, None
        code = None
        if proc is not None:
            tree = descendants(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            for pid in {*tree, *descendants(proc.pid)}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self._log is not None:
            self._log.write(f"[agent] server stopped (status {code})\n".encode())
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> Server:
        """Start the server."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Stop the server, however the block ended."""
        self.stop()
