"""Which images a reproduction runs in, each choice said in words.

Per backend, the image the original runs used (by id): loaded from the bundle when it carries
that image and this engine lacks it, used by id when the engine has it, else the study's tag
as it is now, naming both ids (recorded and used) because that is a different build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.bundle.images import IMAGES, load
from harness.bundle.layout import carried_file
from harness.config.sweep import Plan
from harness.errors import EnvironmentProblem
from harness.results.schema import Manifest


@dataclass
class ImageChoice:
    """The images a reproduction runs in (backend -> tag or id) and what was loaded."""

    images: dict[str, str]
    loaded: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def original_images(manifest: Manifest, plan: Plan,
                    exp_ids: set[str]) -> dict[str, set[tuple[str, str | None]]]:
    """Per backend, the (tag, id) pairs of the images the sampled experiments ran in."""
    used: dict[str, set[tuple[str, str | None]]] = {}
    for rec in manifest.runs:
        if rec.image and rec.experiment_id in exp_ids:
            name = str(plan.experiment(rec.experiment_id).backend)
            used.setdefault(name, set()).add((rec.image.tag, rec.image.id))
    return used


def carried_archives(root: Path, prov: dict[str, Any]) -> dict[str, Path]:
    """Image id -> the archive the bundle carries of it."""
    out: dict[str, Path] = {}
    for image in prov.get("images") or []:
        for archive in image.get("archives") or []:
            path = carried_file(root, archive.get("file"), IMAGES)
            if path is not None and isinstance(archive.get("id"), str):
                out[archive["id"]] = path
    return out


def _load(image_id: str, archive: Path, choice: ImageChoice) -> None:
    from harness.controller.runtimes.docker import connect

    loaded = load(connect(), archive)
    if image_id not in loaded:
        got = ", ".join(loaded) or "no image"
        raise EnvironmentProblem(f"docker load of {archive.name} gave {got}, not the recorded "
                                 f"{image_id}")
    choice.loaded.append(image_id)
    choice.notes.append(f"loaded image {image_id[:19]} from the bundle ({archive.name})")


def _one(runtime: Any, backend: str, seen: set[tuple[str, str | None]],
         archives: dict[str, Path], choice: ImageChoice) -> None:
    if len(seen) != 1:
        choice.notes.append(f"{backend}: the original runs used {len(seen)} images; using the "
                            "study's tag")
        return
    tag, image_id = next(iter(seen))
    if image_id and image_id in archives and runtime.prepare(image_id) is None:
        _load(image_id, archives[image_id], choice)
    if image_id and runtime.prepare(image_id) is not None:
        choice.images[backend] = image_id
        choice.notes.append(f"{backend}: using the original image {tag} ({image_id[:19]}), "
                            "by id")
        return
    now = runtime.prepare(tag)
    if now is not None:
        choice.images[backend] = tag
        choice.notes.append(f"{backend}: the original image {image_id or '(id not recorded)'} "
                            f"is not here; using {tag} as it is now, {now.id} (a different "
                            "build: see comparison.csv image columns)")
    else:
        choice.notes.append(f"{backend}: neither the image {image_id} nor the tag {tag} is "
                            f"here; load the bundle's images or build it "
                            f"('harness images build --backend {backend}')")


def choose_images(runtime: Any, manifest: Manifest, plan: Plan, exp_ids: set[str],
                  images: dict[str, str], archives: dict[str, Path]) -> ImageChoice:
    """The images the reproduction runs in, loading the bundle's where the engine lacks them."""
    choice = ImageChoice(dict(images))
    if runtime.name != "docker":
        if manifest.runner == "docker":
            choice.notes.append("the original ran in containers; the local runner uses this "
                                "Python environment instead of the bundle's images")
        return choice
    if manifest.runner == "local":
        choice.notes.append("the original ran with the local runner (no image); this "
                            "reproduction runs in containers of the study's default images")
    for backend, seen in original_images(manifest, plan, exp_ids).items():
        _one(runtime, backend, seen, archives, choice)
    return choice
