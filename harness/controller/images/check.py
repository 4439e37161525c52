"""Check a built image without a GPU: its engine, CUDA build, packages, and the agent's refusal.

Two containers, both without network and without GPUs:
  1. ``python -m harness.agent.imagecheck`` (engine build, CUDA runtime against the image's
     label, requirements, ``pip check``, shared libraries, Triton's compiler);
  2. for a CUDA image, the agent itself on a cuda run, through the image's own entrypoint
     (vendor entrypoint included): it must refuse with reason ``no_gpu``, exit code 1 and an
     error.json, as any failed run does.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.controller.images.build import BUILD_LABEL, CUDA_LABEL
from harness.controller.images.recipes import image_tag, variant
from harness.errors import EnvironmentProblem
from harness.results.reasons import ExitCode, FailureReason

if TYPE_CHECKING:
    import docker

#: the NVIDIA container runtime gives no GPU to a container with this value, even as default
NO_GPUS = {"NVIDIA_VISIBLE_DEVICES": "void"}


@dataclass
class ImageCheck:
    """What the checks found in one image."""

    tag: str
    image_id: str
    labels: dict[str, str]
    build: dict[str, Any] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    size_bytes: int | None = None

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(c["ok"] for c in self.checks)


def _run(client: docker.DockerClient, tag: str, **kwargs: Any) -> tuple[int, str]:
    """Run a container to its end without network; its exit code and output."""
    import docker.errors

    container = client.containers.create(
        tag, network_mode="none", environment=NO_GPUS, user=f"{os.getuid()}:{os.getgid()}",
        **kwargs,
    )
    try:
        container.start()
        code = int(container.wait().get("StatusCode", -1))
        return code, container.logs(stdout=True, stderr=True).decode(errors="replace")
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"checking {tag}: {e}") from e
    finally:
        container.remove(force=True)


def refusal_spec(backend: str) -> dict[str, Any]:
    """A run spec (config.json) of a cuda run of ``backend`` that needs no model to be refused."""
    from harness.config.experiment import Experiment
    from harness.results.schema import RunInfo, RunSpec

    exp = Experiment(model="/model", backend=backend, device="cuda")
    spec = RunSpec(run=RunInfo(study="image-check", experiment_id=exp.id, cycle=1,
                               run_id=f"{exp.id}-c1"),
                   experiment=exp, model_path="/model", runner="docker")
    return spec.model_dump(mode="json")


def refusal_check(client: docker.DockerClient, tag: str, backend: str) -> dict[str, Any]:
    """Run the agent on a cuda run in ``tag`` without GPUs: it must refuse with reason no_gpu."""
    with tempfile.TemporaryDirectory(prefix="harness-check-") as tmp:
        run_dir = Path(tmp)
        run_dir.chmod(0o777)
        (run_dir / "config.json").write_text(json.dumps(refusal_spec(backend)), encoding="utf-8")
        code, log = _run(client, tag, command=["--config", "/results/config.json"],
                         volumes={str(run_dir): {"bind": "/results", "mode": "rw"}})
        error_file = run_dir / "error.json"
        error = json.loads(error_file.read_text()) if error_file.is_file() else None
    reason = (error or {}).get("reason")
    ok = (code == ExitCode.FAILED and reason == FailureReason.NO_GPU
          and "no NVIDIA GPU visible" in (error or {}).get("message", ""))
    detail = (f"exit {code}, error.json reason {reason}: {(error or {}).get('message')}"
              if error else f"exit {code}, no error.json; log tail: {log[-400:]}")
    return {"name": "agent_refuses_cuda", "ok": ok, "detail": detail}


def check_image(
    backend: str, device: str, *, client: docker.DockerClient | None = None, tag: str | None = None
) -> ImageCheck:
    """Run every check on the built image of ``backend`` on ``device``."""
    import docker.errors

    from harness.controller.runtimes.docker import connect

    client = client or connect()
    recipe = variant(backend, device)
    tag = tag or image_tag(backend, device)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound as e:
        raise EnvironmentProblem(f"{tag} is not built: harness images build --backend {backend} "
                                 f"--device {device}") from e
    labels = dict(image.labels or {})
    cuda = labels.get(CUDA_LABEL)
    args = ["-m", "harness.agent.imagecheck", "--backend", backend,
            "--removed", ",".join(recipe.uninstall)]
    if cuda:
        args += ["--cuda", cuda]
    elif device == "cuda":
        args += ["--cuda", "(no harness.cuda_runtime label)"]
    code, log = _run(client, tag, entrypoint=["python"], command=args)
    try:
        found = json.loads(log.strip().splitlines()[-1])
    except (ValueError, IndexError):
        found = {"build": {}, "checks": [{"name": "imagecheck", "ok": False,
                                          "detail": f"exit {code}: {log[-600:]}"}]}
    result = ImageCheck(tag=tag, image_id=image.id, labels=labels, build=found["build"],
                        checks=found["checks"], size_bytes=image.attrs.get("Size"))
    if device == "cuda":
        result.checks.append(refusal_check(client, tag, backend))
    if BUILD_LABEL not in labels:
        result.checks.append({"name": "labels", "ok": False,
                              "detail": f"no {BUILD_LABEL} label: rebuild with harness images build"})
    return result
