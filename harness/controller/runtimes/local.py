"""Local runtime: the agent as a subprocess of the controller's Python, same contract."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping

from harness.config.datasets import DatasetFile
from harness.controller.runtimes.base import Orphan, RunJob, RunOutcome, agent_env
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, ImageInfo

STOP_GRACE_S = 10.0
#: after timeout_s the agent gets SIGTERM and this long to leave error.json before SIGKILL
TIMEOUT_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1
#: the controller's variables the agent inherits; everything else (secrets included) stays out
INHERITED = frozenset({"PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER", "PYTHONPATH",
                       "VIRTUAL_ENV", "HF_HOME"})
#: prefixes of inherited variables (locale, CUDA, NVIDIA and OpenMP settings)
INHERITED_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_")


def inherited_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The controller's variables on the allow-list (no secrets: those come from job.env)."""
    env = os.environ if environ is None else environ
    return {name: value for name, value in env.items()
            if name in INHERITED or name.startswith(INHERITED_PREFIXES)}


def local_agent_env(job: RunJob, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a local agent: the allow-list plus what the harness sets."""
    env = inherited_env(environ)
    env.update(agent_env(job))
    if job.hf_cache is not None:
        env["HF_HOME"] = str(job.hf_cache)
    if job.system_gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in job.gpus)
    return env


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the controller dies, so no agent outlives it (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _child_setup(cpus: tuple[int, ...] | None) -> Callable[[], None]:
    """What the child runs before the agent: die with the controller; keep to ``cpus`` if given."""

    def setup() -> None:
        _die_with_parent()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


class LocalRuntime:
    """Runs ``python -m harness.agent`` in a new process group per run."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        #: agents in flight (several with execution.max_parallel)
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def model_path_for_agent(self, job: RunJob) -> str:
        """The host path itself, or the hub id."""
        return str(job.model_host_path) if job.model_host_path else job.model_ref

    def dataset_path_for_agent(self, dataset: DatasetFile) -> str:
        """The host path itself."""
        return dataset.path

    def gpu_library_for_agent(self, job: RunJob) -> GpuLibrary:
        """The run's library as it is: the agent sees the host's paths."""
        return job.gpu_library

    def prepare(self, image: str) -> ImageInfo | None:
        """No image: the agent runs in this Python environment."""
        return None

    def find_orphans(self, study: str) -> list[Orphan]:
        """None: an agent dies with its controller (PR_SET_PDEATHSIG), so none is left."""
        return []

    def reap(self, orphan: Orphan) -> tuple[int | None, bytes]:
        """Nothing to reap (find_orphans finds none)."""
        return None, b""

    def reconnect(self) -> None:
        """Nothing to reconnect to: the agent is a process of this machine."""

    def run(self, job: RunJob) -> RunOutcome:
        """Run the agent; at the timeout, SIGTERM its process group, then SIGKILL."""
        env = local_agent_env(job)
        log_path = job.run_dir / "container.log"
        start = time.perf_counter()
        try:
            log = log_path.open("wb")
        except OSError as e:
            return RunOutcome(exit_code=None, duration_s=0.0, reason=FailureReason.STORAGE_ERROR,
                              error=f"cannot write {log_path}: {e.strerror or e}")
        with log:
            with self._lock:
                if self._stopping:
                    return RunOutcome(exit_code=None, duration_s=0.0, reason=FailureReason.INTERRUPTED,
                                      error="interrupted before the agent started")
                proc = subprocess.Popen(
                    [self.python, "-m", "harness.agent", "--config",
                     str(job.run_dir / "config.json")],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_child_setup(job.cpus),  # noqa: PLW1509 - prctl and affinity only
                )
                self._procs.add(proc)
            timed_out = False
            try:
                code = proc.wait(timeout=job.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                code = self._terminate(proc, TIMEOUT_GRACE_S)
            finally:
                with self._lock:
                    self._procs.discard(proc)
        return RunOutcome(
            exit_code=code,
            duration_s=time.perf_counter() - start,
            timed_out=timed_out,
            killed=code is not None and code < 0,
            log_path=log_path,
        )

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
        try:
            os.killpg(proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    @classmethod
    def _terminate(cls, proc: subprocess.Popen[bytes], grace_s: float) -> int:
        """SIGTERM the agent's process group, SIGKILL it after ``grace_s``; its exit code."""
        cls._signal(proc, signal.SIGTERM)
        try:
            return proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            cls._signal(proc, signal.SIGKILL)
            return proc.wait()

    def stop(self) -> None:
        """SIGTERM the agents' process groups, SIGKILL after a grace period; start no more."""
        self._halt(lambda proc: self._terminate(proc, STOP_GRACE_S))

    def kill(self) -> None:
        """SIGKILL the agents' process groups at once; start no more."""
        self._halt(lambda proc: self._signal(proc, signal.SIGKILL))

    def _halt(self, action: Callable[[subprocess.Popen[bytes]], object]) -> None:
        """Start no more agents, and apply ``action`` to those in flight, all at once."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs)
        threads = [threading.Thread(target=action, args=(proc,), daemon=True) for proc in procs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
