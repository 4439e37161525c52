"""Local runtime: the agent as a subprocess of the controller's Python, same contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from harness.controller.runtimes.base import RunJob, RunOutcome
from harness.results.schema import ImageInfo

STOP_GRACE_S = 10.0


class LocalRuntime:
    """Runs ``python -m harness.agent`` in a new process group per run."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._proc: subprocess.Popen[bytes] | None = None

    def model_path_for_agent(self, job: RunJob) -> str:
        """The host path itself, or the hub id."""
        return str(job.model_host_path) if job.model_host_path else job.model_ref

    def prepare(self, image: str) -> ImageInfo | None:
        """No image: the agent runs in this Python environment."""
        return None

    def run(self, job: RunJob) -> RunOutcome:
        """Run the agent, kill its process group at the timeout."""
        env = dict(os.environ)
        env.update(job.env)
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
        if job.hf_cache is not None:
            env["HF_HOME"] = str(job.hf_cache)
        if job.device == "cuda":
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in job.gpus)
        log_path = job.run_dir / "container.log"
        start = time.perf_counter()
        with log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [self.python, "-m", "harness.agent", "--config", str(job.run_dir / "config.json")],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            timed_out = False
            try:
                code = self._proc.wait(timeout=job.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                self._kill()
                code = self._proc.wait()
            finally:
                self._proc = None
        return RunOutcome(
            exit_code=code,
            duration_s=time.perf_counter() - start,
            timed_out=timed_out,
            killed=code is not None and code < 0,
            log_path=log_path,
        )

    def _kill(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Send SIGTERM to the agent, then SIGKILL after a grace period."""
        proc = self._proc
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._kill()
        except ProcessLookupError:
            pass
