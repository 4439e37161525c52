"""Images kept as long as a study needs them, and pruned once none does.

A rebuild moves an image's tag (``harness/NAME:cpu``) to the new build and leaves the old
one untagged, where ``docker image prune`` would delete it. So every image a study's run
starts in gets a keep tag of its own, ``harness/kept:ID12-STUDYFOLDER`` (the image id's first
12 hex digits and the study folder's name): while it has that tag no rebuild or dangling-image
prune removes it, and ``bundle reproduce`` of that study finds it by id.

``harness images prune`` removes the harness images that no study folder references: it reads
the manifest.json of each study folder under the folders it is given (the default output
folder, ``results``, and any named with ``--results``), then, among the images built by the
harness (label ``harness.version``) and those with a keep tag, keeps

- each image a manifest names (by id), tagging it for its studies if it lacks the tag,
- each image that still has a tag other than a keep tag (the current build of a backend),

and removes the rest: keep tags whose study is not in those folders, and untagged builds.
An image a container still uses is kept and said so. Images without the harness label (the
registry-less base, the user's own) are never considered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import EnvironmentProblem

KEEP_REPOSITORY = "harness/kept"
#: the label every image the harness builds carries (images/Dockerfile via build.py)
BUILT_LABEL = "harness.version"
DEFAULT_ROOT = Path("results")
_TAG_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def keep_tag(image_id: str, study_dir: Path) -> str:
    """The keep tag of an image for a study folder: ``harness/kept:ID12-FOLDER``."""
    hex_id = image_id.split(":", 1)[-1]
    name = _TAG_CHARS.sub("_", Path(study_dir).name).strip("_.-") or "study"
    return f"{KEEP_REPOSITORY}:{hex_id[:12]}-{name}"[: len(KEEP_REPOSITORY) + 1 + 128]


def study_dir_of(run_dir: Path) -> Path | None:
    """The study folder of a run folder (STUDY/runs/RUN with a manifest.json), else None."""
    run_dir = Path(run_dir).resolve()
    study = run_dir.parent.parent
    if run_dir.parent.name == "runs" and (study / "manifest.json").is_file():
        return study
    return None


def keep(client: Any, image_id: str, study_dir: Path) -> str | None:
    """Tag an image for a study so that rebuilds and prunes keep it; the tag, or None if not.

    Never raises: a run goes on without the tag (``images prune`` still keeps what a study's
    manifest names, and adds the tag), and an engine that went away is found by the next call.
    """
    tag = keep_tag(image_id, study_dir)
    repository, name = tag.split(":", 1)
    try:
        client.images.get(image_id).tag(repository, name)
    except Exception:  # noqa: BLE001 - best effort: tagging must never fail a run
        return None
    return tag


def referenced_images(roots: Iterable[Path]) -> tuple[dict[str, list[Path]], list[str]]:
    """Image id -> the study folders whose manifest names it; and the manifests not read."""
    refs: dict[str, list[Path]] = {}
    unreadable: list[str] = []
    for root in roots:
        for manifest in sorted([*Path(root).glob("*/manifest.json"),
                                *Path(root).glob("*/*/manifest.json")]):
            try:
                runs = json.loads(manifest.read_text(encoding="utf-8")).get("runs") or []
            except (OSError, ValueError, AttributeError) as e:
                unreadable.append(f"{manifest}: {e}")
                continue
            for run in runs:
                image_id = ((run or {}).get("image") or {}).get("id")
                if image_id and manifest.parent not in refs.setdefault(image_id, []):
                    refs[image_id].append(manifest.parent)
    return refs, unreadable


@dataclass
class Decision:
    """What prune did (or would do) with one image, and why."""

    image_id: str
    tags: list[str]
    action: Literal["keep", "remove"]
    reason: str


@dataclass
class Pruned:
    """The folders prune looked in, and its decision on each harness image."""

    roots: list[Path]
    decisions: list[Decision] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    dry_run: bool = False


def _candidates(client: Any, label: str | None) -> list[Any]:
    """Images built by the harness or holding a keep tag (optionally only those with label)."""
    import docker.errors

    try:
        built = client.images.list(filters={"label": label or BUILT_LABEL})
        kept = [] if label else client.images.list(name=KEEP_REPOSITORY)
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot list the engine's images: {e}") from e
    seen: dict[str, Any] = {}
    for image in [*built, *kept]:
        seen.setdefault(image.id, image)
    return list(seen.values())


def _decide(image: Any, refs: dict[str, list[Path]]) -> Decision:
    tags = sorted(image.tags)
    studies = refs.get(image.id)
    if studies:
        names = ", ".join(str(s) for s in studies[:3]) + (
            f" and {len(studies) - 3} more" if len(studies) > 3 else "")
        return Decision(image.id, tags, "keep", f"used by {names}")
    own = [t for t in tags if not t.startswith(KEEP_REPOSITORY + ":")]
    if own:
        return Decision(image.id, tags, "keep",
                        f"tagged {', '.join(own)} (the current build; remove it with docker rmi)")
    why = ("its keep tags name studies not in these folders" if tags
           else "untagged (left by a rebuild)")
    return Decision(image.id, tags, "remove", f"{why}, and no study here uses it")


def _remove(client: Any, decision: Decision) -> None:
    """Remove an image's keep tags, then the image if nothing else holds it."""
    import docker.errors

    try:
        for tag in decision.tags:
            client.images.remove(tag)
        if not decision.tags:
            client.images.remove(decision.image_id)
    except docker.errors.ImageNotFound:
        pass  # the last tag's removal removed it
    except docker.errors.APIError as e:
        decision.action = "keep"
        decision.reason = f"not removed: {e.explanation or e}"


def prune(client: Any, roots: Iterable[Path], *, dry_run: bool = False,
          label: str | None = None) -> Pruned:
    """Remove the harness images no study folder under ``roots`` references; say what stays.

    ``label`` narrows the images considered to those with that label (a test's own).
    """
    roots = [Path(r) for r in roots]
    refs, unreadable = referenced_images(roots)
    result = Pruned(roots, unreadable=unreadable, dry_run=dry_run)
    for image in sorted(_candidates(client, label), key=lambda i: i.id):
        decision = _decide(image, refs)
        if not dry_run:
            if decision.action == "remove":
                _remove(client, decision)
            else:
                for study in refs.get(image.id, []):
                    if keep_tag(image.id, study) not in decision.tags:
                        keep(client, image.id, study)
        result.decisions.append(decision)
    return result
