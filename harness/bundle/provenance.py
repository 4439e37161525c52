"""What a bundle records about where its results came from: images, packages, harness source."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness.bundle.layout import BUNDLE_FORMAT, PROVENANCE, slug
from harness.bundle.models import models_provenance, recorded_models
from harness.errors import EnvironmentProblem
from harness.results.schema import (
    MANIFEST_SCHEMA_VERSION,
    RESULT_SCHEMA_VERSION,
    ImageInfo,
    Manifest,
)
from harness.source import source_info, source_root


def pip_freeze(image_id: str) -> tuple[str | None, str]:
    """``pip freeze`` inside an image through the Docker engine, or None and why not."""
    try:
        from harness.controller.runtimes.docker import connect

        client = connect()
    except EnvironmentProblem as e:
        return None, f"not captured: {e}"
    try:
        import docker.errors

        client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return None, "not captured: the image is no longer present on this machine"
    except Exception as e:  # noqa: BLE001 - the engine may fail in many ways
        return None, f"not captured: {type(e).__name__}: {e}"
    try:
        out = client.containers.run(
            image_id, ["-m", "pip", "freeze", "--all"], entrypoint="python", remove=True,
            network_mode="none", stdout=True, stderr=False,
        )
    except Exception as e:  # noqa: BLE001
        return None, f"not captured: pip freeze failed in the image ({type(e).__name__}: {e})"
    return out.decode("utf-8", "replace"), "captured with `python -m pip freeze --all` in the image"


def packages_from_results(study_dir: Path, run_ids: list[str]) -> str:
    """The agent's in-environment package list (name==version), from the runs' results."""
    lists: dict[str, list[str]] = {}
    for run_id in run_ids:
        path = study_dir / "runs" / run_id / "result.json"
        if not path.exists():
            continue
        try:
            env = json.loads(path.read_text(encoding="utf-8")).get("environment", {})
        except (OSError, json.JSONDecodeError):
            continue
        pkgs = env.get("packages") or {}
        text = "".join(f"{k}=={v}\n" for k, v in sorted(pkgs.items()))
        lists.setdefault(text, []).append(run_id)
    if not lists:
        return ""
    if len(lists) == 1:
        return next(iter(lists))
    parts = [f"# runs {', '.join(runs)}\n{text}" for text, runs in lists.items()]
    return "# the runs report different package lists\n" + "\n".join(parts)


def _used_images(manifest: Manifest, plan: Any) -> dict[str, dict[str, Any]]:
    """The images the runs used, by tag: ids and digests seen, backend, device, runs."""
    by_tag: dict[str, dict[str, Any]] = {}
    for rec in manifest.runs:
        image: ImageInfo | None = rec.image
        if image is None:
            continue
        exp = plan.experiment(rec.experiment_id)
        entry = by_tag.setdefault(image.tag, {
            "tag": image.tag, "ids": set(), "digests": set(), "backend": exp.backend,
            "device": exp.device, "runs": [],
        })
        if image.id:
            entry["ids"].add(image.id)
        if image.digest:
            entry["digests"].add(image.digest)
        entry["runs"].append(rec.run_id)
    return by_tag


def _describe_image(study_dir: Path, entry: dict[str, Any], *, with_pip_freeze: bool,
                    dest: Path) -> dict[str, Any]:
    """Write one image's Dockerfile and package lists under dest; return its description."""
    from harness.controller.images import dockerfile_path, variant
    from harness.errors import HarnessError

    tag = entry["tag"]
    folder = dest / "images" / slug(tag)
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{PROVENANCE}/images/{slug(tag)}"
    item: dict[str, Any] = {
        "tag": tag, "id": sorted(entry["ids"])[0] if entry["ids"] else None,
        "ids_seen": sorted(entry["ids"]), "digest": next(iter(sorted(entry["digests"])), None),
        "backend": entry["backend"], "device": entry["device"], "runs": entry["runs"],
    }
    try:
        recipe = variant(entry["backend"], entry["device"])
        dockerfile: Path | None = dockerfile_path(entry["backend"], entry["device"], source_root())
    except HarnessError as e:  # a backend without a recipe (a plug-in in the user's image)
        recipe, dockerfile = None, None
        item["dockerfile_note"] = str(e)
    if recipe is not None:
        item["recipe"] = {"base": recipe.base, "extras": list(recipe.extras),
                          "pins": list(recipe.pins), "build_args": recipe.build_args()}
    if dockerfile is not None and dockerfile.is_file():
        shutil.copyfile(dockerfile, folder / "Dockerfile")
        item["dockerfile"] = f"{rel}/Dockerfile"
    else:
        item["dockerfile"] = None
        item.setdefault("dockerfile_note", f"no Dockerfile at {dockerfile}")
    packages = packages_from_results(study_dir, entry["runs"])
    if packages:
        (folder / "packages.txt").write_text(packages, encoding="utf-8")
        item["packages"] = f"{rel}/packages.txt"
    item["pip_freeze"] = None
    if with_pip_freeze and item["id"]:
        text, note = pip_freeze(item["id"])
        item["pip_freeze_note"] = note
        if text is not None:
            (folder / "pip-freeze.txt").write_text(text, encoding="utf-8")
            item["pip_freeze"] = f"{rel}/pip-freeze.txt"
    return item


def describe_images(study_dir: Path, manifest: Manifest, plan: Any, *, with_pip_freeze: bool,
                    dest: Path) -> list[dict[str, Any]]:
    """Write each used image's Dockerfile and package lists; return their descriptions."""
    return [_describe_image(study_dir, entry, with_pip_freeze=with_pip_freeze, dest=dest)
            for _, entry in sorted(_used_images(manifest, plan).items())]


def harness_source() -> dict[str, Any]:
    """The harness source's git commit, whether it differs from it, and its origin URL."""
    info = source_info()
    return {"revision": info.commit, "dirty": info.dirty, "origin": info.remote}


def collect_provenance(study_dir: Path, manifest: Manifest, plan: Any, *, with_pip_freeze: bool,
                       dest: Path) -> dict[str, Any]:
    """Fill the bundle's provenance folder (images or packages); return provenance.json's content.

    ``write_provenance`` writes it once the carried files are added.
    """
    images = describe_images(study_dir, manifest, plan, with_pip_freeze=with_pip_freeze,
                             dest=dest)
    if not images:
        packages = packages_from_results(study_dir, [r.run_id for r in manifest.runs])
        if packages:
            (dest / "environment").mkdir()
            (dest / "environment" / "packages.txt").write_text(packages, encoding="utf-8")
    done = [r.run_id for r in manifest.runs if r.status == "done"]
    return {
        "bundle_format": BUNDLE_FORMAT,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "study": manifest.study,
        "study_folder": study_dir.name,
        "working_dir": manifest.working_dir,
        "harness_version": harness.__version__,
        "harness_version_of_study": manifest.harness_version,
        "git": harness_source(),
        "runner": manifest.runner,
        "host": {"python": sys.version.split()[0], "platform": platform.platform()},
        "result_schema_version": RESULT_SCHEMA_VERSION,
        "manifest_schema_version": MANIFEST_SCHEMA_VERSION,
        "images": images,
        "models": models_provenance(recorded_models(study_dir, done)),
    }


def write_provenance(prov: dict[str, Any], dest: Path) -> None:
    """Write provenance.json into the bundle's provenance folder."""
    (dest / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n", encoding="utf-8")
