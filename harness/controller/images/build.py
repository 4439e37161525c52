"""Build a backend's image through the Docker engine from the shared template."""

from __future__ import annotations

import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.controller.images.base import ensure_offline_base
from harness.controller.images.recipes import (
    context_name,
    dockerfile_path,
    image_tag,
    requirements,
    variant,
)
from harness.controller.images.wheels import (
    Progress,
    assemble_context,
    build_wheel,
    digest,
    fill_wheelhouse,
    stream_context,
)
from harness.errors import EnvironmentProblem, UserInputError
from harness.source import source_info

if TYPE_CHECKING:
    import docker

OFFLINE_PIP_ARGS = "--no-index --find-links /wheels"
#: how an image was built: offline (debootstrap base + wheelhouse) or vendor-base
BUILD_LABEL = "harness.build"
#: the CUDA runtime (major.minor) the engine inside was built for
CUDA_LABEL = "harness.cuda_runtime"


def build_kind(offline: bool) -> str:
    """The value of an image's ``harness.build`` label."""
    return "offline" if offline else "vendor-base"


@dataclass(frozen=True)
class BuiltImage:
    """What a build produced."""

    tag: str
    id: str
    digest: str | None  # a registry digest; None for an image built here and never pushed
    dockerfile: Path
    build_args: dict[str, str] = field(default_factory=dict)
    offline: bool = False
    build_s: float | None = None


def _stream_build(client: docker.DockerClient, progress: Progress | None, **kwargs: Any) -> str:
    """Run a build through the low-level API, streaming its log; return the image id."""
    import docker

    image_id = None
    tail: deque[str] = deque(maxlen=40)
    try:
        for chunk in client.api.build(decode=True, rm=True, forcerm=True, timeout=None, **kwargs):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message", chunk["error"])
                raise EnvironmentProblem(
                    f"docker build of {kwargs.get('tag')} failed: {detail}\n" + "\n".join(tail)
                )
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in text.splitlines():
                if line.strip():
                    tail.append(line)
                    if progress:
                        progress(line)
            aux = chunk.get("aux")
            if isinstance(aux, dict) and "ID" in aux:
                image_id = aux["ID"]
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"docker build of {kwargs.get('tag')} failed: {e}") from e
    if image_id is None:
        raise EnvironmentProblem(f"docker build of {kwargs.get('tag')} reported no image id")
    return image_id


def build_image(
    backend: str,
    device: str,
    *,
    offline: bool,
    repo_root: Path,
    client: docker.DockerClient | None = None,
    progress: Progress | None = None,
) -> BuiltImage:
    """Build (or refresh from cache) the image of ``backend`` on ``device``."""
    import docker

    from harness import __version__
    from harness.controller.runtimes.docker import connect

    start = time.monotonic()
    repo_root = Path(repo_root).resolve()
    recipe = variant(backend, device)
    tag = image_tag(backend, device)
    if offline and not recipe.offline:
        raise UserInputError(f"{tag} cannot be built offline: it starts from the vendor image {recipe.base}")
    dockerfile = dockerfile_path(backend, device, repo_root)
    if not dockerfile.is_file():
        raise EnvironmentProblem(f"no Dockerfile for {tag} at {dockerfile}")
    client = client or connect()
    say = progress or (lambda _line: None)

    name = context_name(backend, device)
    cache = repo_root / ".cache"
    deps = requirements(repo_root, recipe.extras, recipe.pins)
    wheelhouse = None
    if offline:
        base = ensure_offline_base(client, progress=progress)
        wheelhouse = cache / "wheelhouse" / name
        say(f"wheelhouse {wheelhouse}")
        if not fill_wheelhouse(wheelhouse, deps, progress=progress):
            say("wheelhouse is up to date")
        pip_args = OFFLINE_PIP_ARGS
    else:
        base, pip_args = recipe.base, recipe.pip_args

    with tempfile.TemporaryDirectory(prefix="harness-wheel-") as tmp:
        say("building the harness wheel")
        wheel = build_wheel(repo_root, Path(tmp), progress=progress)
        context = assemble_context(
            cache / "build" / name,
            dockerfile=dockerfile,
            deps_requirements=deps,
            harness_wheel=wheel,
            wheelhouse=wheelhouse,
        )

    source = source_info(repo_root)
    how = build_kind(offline)
    build_args = {
        "BASE_IMAGE": base,
        "PIP_ARGS": pip_args,
        **recipe.build_args(),
        "HARNESS_BACKEND": backend,
        "HARNESS_DEVICE": device,
        "HARNESS_SOURCE": source.remote or "",
        "HARNESS_GIT_REVISION": source.revision or "",
        "HARNESS_IMAGE_BUILD": how,
    }
    labels = {
        "harness.version": __version__,
        "harness.offline": str(offline).lower(),
        BUILD_LABEL: how,
        "harness.requirements": digest(deps)[:16],
        "org.opencontainers.image.revision": source.revision or "",
    }
    if recipe.cuda:
        labels[CUDA_LABEL] = recipe.cuda
    say(f"building {tag} from {base}")
    image_id = _stream_build(
        client, progress, fileobj=stream_context(context), custom_context=True, tag=tag,
        buildargs=build_args, labels=labels,
    )
    try:
        attrs = client.images.get(image_id).attrs
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot inspect the image just built ({tag}): {e}") from e
    digests = attrs.get("RepoDigests") or []
    return BuiltImage(
        tag=tag,
        id=attrs.get("Id", image_id),
        digest=digests[0] if digests else None,
        dockerfile=dockerfile,
        build_args=build_args,
        offline=offline,
        build_s=round(time.monotonic() - start, 1),
    )
