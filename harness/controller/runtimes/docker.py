"""Docker runtime: one container per run through the docker SDK.

This module is the container's lifecycle (create, check, start, wait, log, remove, stop, reap);
what the container looks like (mounts, labels, devices, limits) is ``runtimes.container``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends.cache import cache_root
from harness.config.datasets import DatasetFile
from harness.controller.images.retention import keep, study_dir_of
from harness.controller.runtimes.base import Orphan, RunJob, RunOutcome
from harness.controller.runtimes.container import (
    LABEL_PREFIX,
    SIMGPU_STATE,
    cache_mount,
    create_args,
    dataset_target,
    mounts,
    writable_targets,
)
from harness.controller.runtimes.hardening import (
    container_problems,
    container_user,
    hand_over,
    mount_problems,
)
from harness.errors import EngineUnavailable, EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, ImageInfo

#: cache_mount and SIMGPU_STATE are also importable from here, where they were first
__all__ = ["LABEL_PREFIX", "SIMGPU_STATE", "DockerRuntime", "cache_mount", "connect"]

STOP_GRACE_S = 10
#: after timeout_s the agent gets SIGTERM and this long to leave error.json before SIGKILL
TIMEOUT_GRACE_S = 5


def connect() -> Any:
    """A docker client that answered a ping, or EnvironmentProblem saying why not."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as e:  # noqa: BLE001 - any failure means "no engine answers"
        raise EnvironmentProblem(f"no Docker engine answers ({type(e).__name__}: {e})") from e


def _engine_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the engine stopped answering (not that it refused a request)."""
    import requests

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout, EngineUnavailable)


def _unavailable(error: Exception) -> EngineUnavailable:
    return EngineUnavailable(f"the Docker engine stopped answering ({type(error).__name__}: {error})")


def _engine_lost(start: float, info: ImageInfo | None, container_id: str | None,
                 error: Exception) -> RunOutcome:
    """The outcome of a run during which the engine went away."""
    message = str(error) if isinstance(error, EngineUnavailable) else str(_unavailable(error))
    return RunOutcome(exit_code=None, duration_s=time.perf_counter() - start, image=info,
                      container_id=container_id, reason=FailureReason.ENGINE_UNAVAILABLE,
                      error=f"{message} during the run")


def _wait(container: Any, timeout_s: float) -> tuple[int, bool]:
    """Wait for a started container: its exit code, and whether it was stopped at the timeout."""
    import requests

    began = time.monotonic()
    try:
        return int(container.wait(timeout=timeout_s).get("StatusCode", -1)), False
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        # the SDK reports a read timeout on the engine's socket as a ConnectionError; one that
        # comes before the timeout is the engine going away
        if time.monotonic() - began < timeout_s:
            raise
    # SIGTERM first: the agent's error.json then shows where it was stuck
    container.stop(timeout=TIMEOUT_GRACE_S)
    return int(container.wait(timeout=60).get("StatusCode", -1)), True


def _save_log(outcome: RunOutcome, path: Path, log: bytes) -> None:
    """Write the container's log into the run folder (a failure to do so is a storage error)."""
    try:
        path.write_bytes(log)
        outcome.log_path = path
    except OSError as e:
        outcome.reason = FailureReason.STORAGE_ERROR
        outcome.error = f"cannot write {path}: {e.strerror or e}"


def _remove(container: Any) -> Exception | None:
    """Remove a container; the engine's error if it did not answer (the container then stays)."""
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.APIError:
        pass  # gone already
    except _engine_errors() as e:
        return e  # reaped once the engine answers again
    return None


def _quietly(action: Callable[[Any], object], container: Any) -> None:
    """Apply ``action`` to a container that may be gone already."""
    try:
        action(container)
    except Exception:  # noqa: BLE001 - it may be gone already
        pass


class DockerRuntime:
    """Starts the backend image with the run folder at /results and no network."""

    name = "docker"

    def __init__(self, client: Any | None = None, cache_dir: Path | None = None) -> None:
        self.client = client or connect()
        self.cache_dir = cache_dir or cache_root()
        #: containers started and not yet removed (several with execution.max_parallel)
        self._containers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopping = False
        self._kept: set[tuple[str, Path]] = set()

    def model_path_for_agent(self, job: RunJob) -> str:
        """/model for a mounted folder, else the hub id (read from /hf-cache)."""
        return "/model" if job.model_host_path else job.model_ref

    def dataset_path_for_agent(self, dataset: DatasetFile) -> str:
        """/datasets/FIELD/NAME: each file is mounted there read-only, by itself."""
        return dataset_target(dataset)

    def gpu_library_for_agent(self, job: RunJob) -> GpuLibrary:
        """Simulated GPUs' settings at SIMGPU_STATE (read-only), their truth file in /results."""
        lib = job.gpu_library
        if lib.kind != "simulated":
            return lib
        return lib.model_copy(update={
            "state_dir": SIMGPU_STATE if lib.state_dir else None,
            "truth_file": f"/results/{Path(lib.truth_file).name}" if lib.truth_file else None,
        })

    def image_info(self, image: str) -> ImageInfo | None:
        """Identity of a local image, or None if the engine does not have it."""
        import docker.errors

        try:
            img = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return None
        except _engine_errors() as e:
            raise _unavailable(e) from e
        digests = img.attrs.get("RepoDigests") or []
        return ImageInfo(tag=image, id=img.id, digest=digests[0] if digests else None)

    def prepare(self, image: str) -> ImageInfo | None:
        """The image's identity (None when missing; the run then fails with a reason)."""
        return self.image_info(image)

    def _keep(self, info: ImageInfo, job: RunJob) -> None:
        """Tag the run's image for its study (once), so that no rebuild or prune removes it."""
        study = study_dir_of(job.run_dir)
        if study is not None and info.id and (info.id, study) not in self._kept \
                and keep(self.client, info.id, study):
            self._kept.add((info.id, study))

    def reconnect(self) -> None:
        """Ping the engine on a new connection; EngineUnavailable while it does not answer.

        Pooled connections are dropped first: one still open to an engine that is shutting
        down would answer although no new connection can reach it any more.
        """
        try:
            self.client.close()
            self.client.ping()
        except Exception as e:  # noqa: BLE001 - any failure means "no engine answers"
            raise _unavailable(e) from e

    def _create(self, job: RunJob) -> Any:
        """Create (not start) the run's container, after checking what it would mount."""
        volumes, env = mounts(job, self.cache_dir)
        user = container_user()
        unsafe = mount_problems(volumes, self._writable(job))
        if unsafe:
            raise RunFailure("refusing to start the container: " + "; ".join(unsafe),
                             reason=FailureReason.UNSAFE_CONTAINER)
        for host_path, spec in volumes.items():
            if spec["mode"] == "rw":
                hand_over(Path(host_path), user)
        return self.client.containers.create(job.image, **create_args(job, volumes, env, user))

    def run(self, job: RunJob) -> RunOutcome:
        """Create, start and wait for the container; save its log; remove it."""
        import docker.errors

        start = time.perf_counter()
        if job.image is None:
            return RunOutcome(
                exit_code=None, duration_s=0.0, reason=FailureReason.IMAGE_MISSING,
                error=f"backend {job.backend!r} has no image for device {job.device}; name one "
                "in the study's images: block, or run with the local runner",
            )
        try:
            info = self.image_info(job.image)
            if info is None:
                return RunOutcome(
                    exit_code=None, duration_s=0.0, reason=FailureReason.IMAGE_MISSING,
                    error=f"image {job.image!r} is not present; build it with "
                    "'harness images build' (or 'make images')",
                )
            self._keep(info, job)
            container = self._create(job)
        except RunFailure as e:
            return RunOutcome(exit_code=None, duration_s=time.perf_counter() - start,
                              reason=e.reason, error=str(e))
        except docker.errors.APIError as e:
            return RunOutcome(exit_code=None, duration_s=time.perf_counter() - start,
                              reason=FailureReason.CONTAINER_CREATE_FAILED, error=str(e))
        except _engine_errors() as e:
            return _engine_lost(start, None, None, e)
        try:
            outcome = self._supervise(container, job, info, start)
        finally:
            with self._lock:
                self._containers.pop(job.run_id, None)
            lost = _remove(container)
        if lost is not None and outcome.reason is None:
            # it went away as the run ended (a restart stops containers first): the exit code
            # may be the engine's doing, and the container is left for the reaper
            outcome.reason = FailureReason.ENGINE_UNAVAILABLE
            outcome.error = f"{_unavailable(lost)} as the run ended"
        return outcome

    def _supervise(self, container: Any, job: RunJob, info: ImageInfo, start: float) -> RunOutcome:
        """Check, start and wait for a created container, then collect its outcome and log."""
        import docker.errors

        code: int | None = None
        try:
            unsafe = container_problems(container.attrs, self._writable(job))
            if unsafe:
                return RunOutcome(
                    exit_code=None, duration_s=time.perf_counter() - start, image=info,
                    container_id=container.id, reason=FailureReason.UNSAFE_CONTAINER,
                    error="the created container is not hardened as required: " + "; ".join(unsafe),
                )
            with self._lock:  # stop() waits for this, so a started container is always seen
                if self._stopping:
                    return RunOutcome(exit_code=None, duration_s=time.perf_counter() - start,
                                      image=info, reason=FailureReason.INTERRUPTED,
                                      error="interrupted before the container started")
                self._containers[job.run_id] = container
                container.start()
            code, timed_out = _wait(container, job.timeout_s)
            container.reload()
            state = container.attrs.get("State", {})
            outcome = RunOutcome(
                exit_code=code,
                duration_s=time.perf_counter() - start,
                timed_out=timed_out,
                killed=code in (137, -9) and not timed_out,
                oom_killed=bool(state.get("OOMKilled")),
                container_id=container.id,
                image=info,
            )
            _save_log(outcome, job.run_dir / "container.log",
                      container.logs(stdout=True, stderr=True))
            return outcome
        except docker.errors.APIError as e:
            return RunOutcome(
                exit_code=code, duration_s=time.perf_counter() - start, container_id=container.id,
                image=info, reason=FailureReason.DOCKER_ERROR, error=str(e),
            )
        except _engine_errors() as e:
            return _engine_lost(start, info, container.id, e)

    def _writable(self, job: RunJob) -> set[str]:
        """Container paths allowed to be read-write: /results and the backend's cache mount."""
        return writable_targets(job, self.cache_dir)

    def stop(self) -> None:
        """Stop the containers in flight (SIGTERM, SIGKILL after a grace period); start no more."""
        self._halt(lambda container: container.stop(timeout=STOP_GRACE_S))

    def kill(self) -> None:
        """Kill the containers in flight at once (a second Ctrl+C); start no more."""
        self._halt(lambda container: container.kill())

    def _halt(self, action: Callable[[Any], object]) -> None:
        """Start no more containers, and apply ``action`` to those in flight, all at once."""
        with self._lock:
            self._stopping = True
            containers = list(self._containers.values())
        threads = [threading.Thread(target=_quietly, args=(action, c), daemon=True)
                   for c in containers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def find_orphans(self, study: str) -> list[Orphan]:
        """Containers of this study name started by a controller (labels say where they write)."""
        found = []
        for container in self.containers_of(study):
            labels = (container.attrs.get("Config") or {}).get("Labels") or {}
            run_dir = labels.get(f"{LABEL_PREFIX}.run_dir")
            run_id = labels.get(f"{LABEL_PREFIX}.run")
            if not run_dir or not run_id:
                continue
            study_dir = labels.get(f"{LABEL_PREFIX}.study_dir") or str(Path(run_dir).parent.parent)
            pid = labels.get(f"{LABEL_PREFIX}.controller_pid", "")
            found.append(Orphan(
                container=container, container_id=container.id, study=study, run_id=run_id,
                run_dir=Path(run_dir), study_dir=Path(study_dir),
                controller_pid=int(pid) if pid.isdigit() else None,
                running=container.status in ("running", "restarting", "paused", "created"),
                created=str(container.attrs.get("Created") or ""),
            ))
        return found

    def reap(self, orphan: Orphan) -> tuple[int | None, bytes]:
        """Stop an orphan (SIGTERM, then SIGKILL), take its exit code and log, remove it.

        Raises EngineUnavailable when the engine stops answering meanwhile.
        """
        import docker.errors

        container = orphan.container
        code: int | None = None
        log = b""
        try:
            if orphan.running:
                container.stop(timeout=STOP_GRACE_S)
            code = int(container.wait(timeout=STOP_GRACE_S + 60).get("StatusCode", -1))
            log = container.logs(stdout=True, stderr=True)
        except _engine_errors() as e:
            raise _unavailable(e) from e
        except (docker.errors.APIError, OSError, ValueError):
            pass  # gone already, or its log cannot be read
        lost = _remove(container)
        if lost is not None:
            raise _unavailable(lost) from lost
        return code, log

    def containers_of(self, study: str | None = None) -> list[Any]:
        """Containers this harness started (optionally of one study), running or not."""
        label = f"{LABEL_PREFIX}.study" + (f"={study}" if study else "")
        try:
            return list(self.client.containers.list(all=True, filters={"label": label},
                                                    ignore_removed=True))
        except _engine_errors() as e:
            raise _unavailable(e) from e
