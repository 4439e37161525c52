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

When it read no study manifest at all (run from a folder without ``results/``, or given only
folders that hold no study), every image held only by keep tags would look unused; prune then
refuses to remove anything (UserInputError) unless it is a dry run or ``force`` is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import EnvironmentProblem, UserInputError

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


@dataclass
class References:
    """What the study manifests under some folders say: image id -> the studies using it."""

    images: dict[str, list[Path]] = field(default_factory=dict)
    #: the manifests read (a study without images counts)
    manifests: list[Path] = field(default_factory=list)
    #: the manifests that could not be read, each with why
    unreadable: list[str] = field(default_factory=list)


def referenced_images(roots: Iterable[Path]) -> References:
    """The images the study manifests under ``roots`` name, and which manifests were read."""
    found = References()
    for root in roots:
        for manifest in sorted([*Path(root).glob("*/manifest.json"),
                                *Path(root).glob("*/*/manifest.json")]):
            try:
                runs = json.loads(manifest.read_text(encoding="utf-8")).get("runs") or []
            except (OSError, ValueError, AttributeError) as e:
                found.unreadable.append(f"{manifest}: {e}")
                continue
            found.manifests.append(manifest)
            for run in runs:
                image_id = ((run or {}).get("image") or {}).get("id")
                if image_id and manifest.parent not in found.images.setdefault(image_id, []):
                    found.images[image_id].append(manifest.parent)
    return found


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
    #: the study manifests read (none: every keep tag looks stale)
    manifests: list[Path] = field(default_factory=list)


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


def _refuse_blind_removal(pruned: Pruned) -> None:
    """UserInputError when no manifest was read and keep-tagged images would be removed."""
    held = [d for d in pruned.decisions if d.action == "remove" and d.tags]
    if pruned.manifests or not held:
        return
    looked = ", ".join(f"{r}/*/manifest.json" + ("" if r.is_dir() else " (no such folder)")
                       for r in pruned.roots)
    tags = ", ".join(t for d in held[:3] for t in d.tags) + (
        f" and {len(held) - 3} more images" if len(held) > 3 else "")
    raise UserInputError(
        f"images prune: no study manifest was read (looked at {looked}), so {len(held)} "
        f"image(s) held only by keep tags ({tags}) would be removed although a study may still "
        "use them; nothing was removed. Name the folders your studies are in with "
        "--results DIR (repeatable), see the decisions with --dry-run, or remove them anyway "
        "with --force", problems=pruned.unreadable)


def prune(client: Any, roots: Iterable[Path], *, dry_run: bool = False, force: bool = False,
          label: str | None = None) -> Pruned:
    """Remove the harness images no study folder under ``roots`` references; say what stays.

    Having read no study manifest, it refuses (UserInputError, nothing removed) to remove
    images held by keep tags unless ``dry_run`` or ``force``. ``label`` narrows the images
    considered to those with that label (a test's own).
    """
    roots = [Path(r) for r in roots]
    found = referenced_images(roots)
    result = Pruned(roots, unreadable=found.unreadable, dry_run=dry_run,
                    manifests=found.manifests)
    result.decisions = [_decide(image, found.images)
                        for image in sorted(_candidates(client, label), key=lambda i: i.id)]
    if not (dry_run or force):
        _refuse_blind_removal(result)
    if dry_run:
        return result
    for decision in result.decisions:
        if decision.action == "remove":
            _remove(client, decision)
            continue
        for study in found.images.get(decision.image_id, []):
            if keep_tag(decision.image_id, study) not in decision.tags:
                keep(client, decision.image_id, study)
    return result
