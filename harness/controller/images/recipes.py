"""Where an image's recipe comes from: the backend's spec, the shared template, pyproject extras."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

from harness.backends import registry
from harness.backends.spec import ImageVariant
from harness.config.problems import suggest
from harness.errors import EnvironmentProblem, UserInputError

NAMESPACE = "harness"
#: the Dockerfile template every backend's image is built from (images/Dockerfile)
TEMPLATE = "Dockerfile"
PACKAGE = "harness"


def variant(backend: str, device: str) -> ImageVariant:
    """How ``backend``'s image is built for ``device``; UserInputError when it has none."""
    spec = registry.get(backend)
    if spec.recipe is None:
        raise UserInputError(
            f"backend {backend!r} has no image recipe; run it with the local runner or name "
            "an image of your own in the study's images: block"
        )
    variants = spec.recipe.variants
    if device not in variants:
        raise UserInputError(
            f"backend {backend!r} has no {device!r} image{suggest(device, variants)} "
            f"(devices: {', '.join(variants)})"
        )
    return variants[device]


def image_tag(backend: str, device: str) -> str:
    """The image tag of a backend and device, such as ``harness/IMAGE:cpu``."""
    variant(backend, device)
    tag = registry.get(backend).image_tag(device, NAMESPACE)
    assert tag is not None
    return tag


def dockerfile_path(backend: str, device: str, repo_root: Path) -> Path:
    """The Dockerfile an image is built from: the shared template unless the recipe names one."""
    own = variant(backend, device).dockerfile
    return Path(repo_root) / "images" / (own or TEMPLATE)


def context_name(backend: str, device: str) -> str:
    """The folder name of an image's build context and wheelhouse (``IMAGE-cpu``)."""
    spec = registry.get(backend)
    assert spec.recipe is not None
    return f"{spec.recipe.image}-{device}"


def requirements(repo_root: Path, extras: Iterable[str], pins: Iterable[str] = ()) -> list[str]:
    """The requirements of this package with ``extras``, read from pyproject.toml."""
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
            if extra not in optional:
                raise EnvironmentProblem(
                    f"{pyproject} has no extra {extra!r}{suggest(extra, optional)}"
                )
            seen_extras.add(extra)
            add(optional[extra])

    add(project.get("dependencies", []))
    add_extras(extras)
    add(pins)
    return out
