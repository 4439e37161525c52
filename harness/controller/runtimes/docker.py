"""Docker runtime: one container per run through the docker SDK."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from harness.config.backends import BACKENDS, cache_root
from harness.controller.runtimes.base import RunJob, RunOutcome
from harness.errors import EnvironmentProblem
from harness.results.schema import ImageInfo

STOP_GRACE_S = 10
LABEL_PREFIX = "org.harness"


def connect() -> Any:
    """A docker client that answered a ping, or EnvironmentProblem saying why not."""
    try:
        import docker

        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except Exception as e:  # noqa: BLE001 - any failure means "no engine answers"
        raise EnvironmentProblem(f"no Docker engine answers ({type(e).__name__}: {e})") from e


def run_labels(job: RunJob) -> dict[str, str]:
    """Labels that name the study and run of a container, so strays can be found."""
    return {
        f"{LABEL_PREFIX}.study": job.study,
        f"{LABEL_PREFIX}.run": job.run_id,
        f"{LABEL_PREFIX}.run_dir": str(job.run_dir),
        f"{LABEL_PREFIX}.controller_pid": str(os.getpid()),
    }


def cache_mount(job: RunJob, root: Path) -> tuple[Path, str] | None:
    """Host folder and container path of the cache of the run's backend, if it keeps one.

    The backend comes from the run spec (config.json) the controller wrote for the agent.
    """
    try:
        spec = json.loads((job.run_dir / "config.json").read_text(encoding="utf-8"))
        backend = BACKENDS.get(spec["experiment"]["backend"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if backend is None or backend.cache_mount is None:
        return None
    return root / backend.name, backend.cache_mount


class DockerRuntime:
    """Starts the backend image with the run folder at /results and no network."""

    name = "docker"

    def __init__(self, client: Any | None = None, cache_dir: Path | None = None) -> None:
        self.client = client or connect()
        self.cache_dir = cache_dir or cache_root()
        self._container: Any | None = None

    def model_path_for_agent(self, job: RunJob) -> str:
        """/model for a mounted folder, else the hub id (read from /hf-cache)."""
        return "/model" if job.model_host_path else job.model_ref

    def image_info(self, image: str) -> ImageInfo | None:
        """Identity of a local image, or None if the engine does not have it."""
        import docker.errors

        try:
            img = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return None
        digests = img.attrs.get("RepoDigests") or []
        return ImageInfo(tag=image, id=img.id, digest=digests[0] if digests else None)

    def prepare(self, image: str) -> ImageInfo | None:
        """The image's identity (None when missing; the run then fails with a reason)."""
        return self.image_info(image)

    def _create(self, job: RunJob) -> Any:
        import docker.types

        volumes = {str(job.run_dir.resolve()): {"bind": "/results", "mode": "rw"}}
        env = {"HARNESS_RUN_ID": job.run_id, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        env.update(job.env)
        if job.model_host_path is not None:
            volumes[str(job.model_host_path)] = {"bind": "/model", "mode": "ro"}
        if job.hf_cache is not None:
            volumes[str(job.hf_cache)] = {"bind": "/hf-cache", "mode": "ro"}
            env["HF_HOME"] = "/hf-cache"
        mount = cache_mount(job, self.cache_dir)
        if mount is not None:  # built engines, reused across runs (BackendSpec.cache_mount)
            host, target = mount
            try:
                host.mkdir(parents=True, exist_ok=True)
                volumes[str(host)] = {"bind": target, "mode": "rw"}
            except OSError:
                pass  # no cache: the agent builds into its own folder, and the run still runs
        kwargs: dict[str, Any] = {}
        if job.device == "cuda":
            kwargs["device_requests"] = [
                docker.types.DeviceRequest(
                    device_ids=[str(g) for g in job.gpus], capabilities=[["gpu"]]
                )
            ]
        if job.mem_limit:
            kwargs["mem_limit"] = job.mem_limit
            kwargs["memswap_limit"] = job.mem_limit
        return self.client.containers.create(
            job.image,
            command=["--config", "/results/config.json"],
            volumes=volumes,
            environment=env,
            network_mode="none",
            user=f"{os.getuid()}:{os.getgid()}",
            labels=run_labels(job),
            working_dir="/results",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=job.pids_limit,
            shm_size="1g",
            ipc_mode="private",
            detach=True,
            **kwargs,
        )

    def run(self, job: RunJob) -> RunOutcome:
        """Create, start and wait for the container; save its log; remove it."""
        import docker.errors
        import requests

        start = time.perf_counter()
        info = self.image_info(job.image)
        if info is None:
            return RunOutcome(
                exit_code=None, duration_s=0.0, reason="image_missing",
                error=f"image {job.image!r} is not present; build it with "
                "'harness images build' (or 'make images')",
            )
        try:
            container = self._create(job)
        except docker.errors.APIError as e:
            return RunOutcome(
                exit_code=None, duration_s=time.perf_counter() - start, image=info,
                reason="container_create_failed", error=str(e),
            )
        self._container = container
        log_path = job.run_dir / "container.log"
        timed_out = False
        code: int | None = None
        try:
            container.start()
            try:
                status = container.wait(timeout=job.timeout_s)
                code = int(status.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                code = int(container.wait(timeout=60).get("StatusCode", -1))
            container.reload()
            state = container.attrs.get("State", {})
            log_path.write_bytes(container.logs(stdout=True, stderr=True))
            return RunOutcome(
                exit_code=code,
                duration_s=time.perf_counter() - start,
                timed_out=timed_out,
                killed=code in (137, -9) and not timed_out,
                oom_killed=bool(state.get("OOMKilled")),
                container_id=container.id,
                image=info,
                log_path=log_path,
            )
        except docker.errors.APIError as e:
            return RunOutcome(
                exit_code=code, duration_s=time.perf_counter() - start, container_id=container.id,
                image=info, reason="docker_error", error=str(e),
            )
        finally:
            self._container = None
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass

    def stop(self) -> None:
        """Stop the container in flight: SIGTERM, then SIGKILL after a grace period."""
        container = self._container
        if container is not None:
            try:
                container.stop(timeout=STOP_GRACE_S)
            except Exception:  # noqa: BLE001 - it may be gone already
                pass

    def containers_of(self, study: str | None = None) -> list[Any]:
        """Containers this harness started (optionally of one study), running or not."""
        label = f"{LABEL_PREFIX}.study" + (f"={study}" if study else "")
        return list(self.client.containers.list(all=True, filters={"label": label}))
