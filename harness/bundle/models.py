"""The models of a bundle: what the runs recorded, where a reviewer keeps them, do they match.

``recorded_models`` reads each run's ``result.json`` ``model`` (harness.model_identity).
``locate_models`` maps each model the study names to a folder on the reviewer's machine, each
choice said in words: ``--model NAME=PATH`` first; then a folder name under ``--model-root
DIR`` (a relative name as written, an absolute one by its last part); then a relative name
from the folder the study ran from (the manifest's ``working_dir``) and from the current
folder; an absolute name as it is; anything else is a hub id, read from the Hugging Face cache.
``check_model`` fingerprints each in the mode and scheme the runs used and compares it file by
file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from harness.config.experiment import FingerprintMode
from harness.controller.preflight import locate_model
from harness.errors import RunFailure, UserInputError
from harness.model_identity import (
    KNOWN_SCHEMES,
    PATH_PREFIXES,
    WEIGHT_SUFFIXES,
    differences,
    hub_snapshot,
    identify,
)
from harness.results.schema import ModelIdentity


@dataclass
class Recorded:
    """One copy of a model as runs recorded it, and those runs."""

    identity: ModelIdentity
    runs: list[str] = field(default_factory=list)


def recorded_models(study_dir: Path, run_ids: list[str]) -> dict[str, list[Recorded]]:
    """Model name -> the distinct copies the runs recorded (by fingerprint), most runs first."""
    found: dict[str, dict[str | None, Recorded]] = {}
    for run_id in run_ids:
        try:
            data = json.loads((study_dir / "runs" / run_id / "result.json").read_text("utf-8"))
            identity = ModelIdentity.model_validate(data["model"]) if data.get("model") else None
        except (OSError, ValueError, KeyError, ValidationError):
            continue
        if identity is None:
            continue
        copies = found.setdefault(identity.ref, {})
        copies.setdefault(identity.fingerprint, Recorded(identity)).runs.append(run_id)
    return {ref: sorted(c.values(), key=lambda r: -len(r.runs)) for ref, c in found.items()}


def models_provenance(recorded: dict[str, list[Recorded]]) -> list[dict[str, Any]]:
    """The bundle's list of models: each copy's source, fingerprint and files, and its runs."""
    return [{**copy.identity.model_dump(), "runs": copy.runs}
            for ref in sorted(recorded) for copy in recorded[ref]]


@dataclass
class ModelPlace:
    """Where a reviewer's copy of a model is, and why there."""

    ref: str
    folder: Path | None
    why: str
    snapshot: Path | None = None


def _folder_candidates(ref: str, model_root: Path | None,
                       working_dir: Path | None) -> list[tuple[Path, str]]:
    path = Path(ref).expanduser()
    out: list[tuple[Path, str]] = []
    if model_root is not None:
        out.append((model_root / (path.name if path.is_absolute() else path), "under --model-root"))
    if path.is_absolute():
        out.append((path, "the path the study names"))
        return out
    if working_dir is not None:
        out.append((working_dir / path, "relative to the folder the study ran from "
                                        f"({working_dir}, manifest working_dir)"))
    out.append((Path.cwd() / path, "relative to the current folder"))
    return out


def locate_models(refs: list[str], *, mapped: dict[str, Path], model_root: Path | None,
                  working_dir: Path | None, hf_cache: str | None,
                  revisions: dict[str, str] | None = None) -> list[ModelPlace]:
    """Where each model is on this machine; UserInputError naming every one not found.

    A hub id whose runs recorded a revision (``revisions``) is taken at that revision when
    the cache holds its snapshot, and handed to the runs as that folder, so the engine loads
    exactly it rather than whatever refs/main names now. Otherwise refs/main's snapshot is
    used, and the fingerprint check says whether it is the same model.
    """
    revisions = revisions or {}
    places: list[ModelPlace] = []
    missing: list[str] = []
    for ref in refs:
        if ref in mapped:
            folder = mapped[ref].expanduser()
            if not folder.is_dir():
                missing.append(f"{ref}: --model {ref}={mapped[ref]}: not a folder")
            places.append(ModelPlace(ref, folder.resolve(), f"--model {ref}={mapped[ref]}"))
            continue
        tried = _folder_candidates(ref, model_root, working_dir)
        hit = next(((p, why) for p, why in tried if p.is_dir()), None)
        if hit is not None:
            places.append(ModelPlace(ref, hit[0].resolve(), hit[1]))
            continue
        if ref.startswith(PATH_PREFIXES) or Path(ref).is_absolute():
            missing.append(f"{ref}: looked at " + ", ".join(str(p) for p, _ in tried))
            continue
        try:
            cache = locate_model(ref, hf_cache, working_dir).hf_cache
        except RunFailure as e:
            missing.append(f"{ref}: {e}")
            continue
        revision = revisions.get(ref)
        snapshot = hub_snapshot(cache, ref, revision) if cache else None
        if snapshot is None:
            missing.append(f"{ref}: not a folder ({', '.join(str(p) for p, _ in tried)}) and "
                           f"not in the Hugging Face cache {cache or '(none found)'}")
            continue
        if revision and snapshot.name == revision:
            places.append(ModelPlace(ref, snapshot, f"hub id at the recorded revision "
                                     f"{revision[:12]}, in {cache}", snapshot=snapshot))
            continue
        at = (f"; the recorded revision {revision[:12]} is not in the cache" if revision
              else "")
        places.append(ModelPlace(ref, None, f"hub id, snapshot {snapshot.name} (refs/main) in "
                                 f"{cache}{at}", snapshot=snapshot))
    if missing:
        raise UserInputError(
            "bundle reproduce: models not found on this machine; nothing was started. Map each "
            "with --model NAME=PATH (or --model-root DIR)", problems=missing)
    return places


@dataclass
class ModelCheck:
    """The outcome of checking one reviewer's model against the bundle's fingerprint."""

    ref: str
    status: Literal["match", "mismatch", "not checked"]
    detail: list[str]
    #: what a match does not cover (an older scheme's fingerprint sampled non-weight files)
    caveat: str | None = None

    def summary(self) -> str:
        """One line for comparison.csv and the output."""
        if self.status == "match":
            return "match"
        return f"{self.status}: {'; '.join(self.detail[:3])}" + (
            f" (and {len(self.detail) - 3} more)" if len(self.detail) > 3 else "")


def _caveat(recorded: ModelIdentity) -> str | None:
    """What a match with ``recorded`` leaves unchecked: non-weight files an old scheme sampled."""
    loose = [f.path for f in recorded.files
             if f.sampled and not f.path.lower().endswith(WEIGHT_SUFFIXES)]
    if not loose:
        return None
    return (f"checked in the recorded fingerprint scheme {recorded.scheme}, which sampled "
            f"{', '.join(loose[:3])}{' ...' if len(loose) > 3 else ''} rather than hashing "
            "it whole")


def check_model(place: ModelPlace, copies: list[Recorded]) -> ModelCheck:
    """Fingerprint a reviewer's model as the runs did (mode and scheme) and compare it."""
    usable = [c for c in copies if c.identity.fingerprint]
    if not usable:
        return ModelCheck(place.ref, "not checked", ["the bundle records no fingerprint of it"])
    newer = sorted({c.identity.scheme for c in usable} - set(KNOWN_SCHEMES))
    if newer:
        return ModelCheck(place.ref, "not checked", [
            f"the bundle's fingerprint uses scheme {', '.join(map(str, newer))}, which this "
            f"harness does not know (it knows {', '.join(map(str, KNOWN_SCHEMES))}): check it "
            "with the harness version the bundle's source archive holds"])
    folder = place.folder or place.snapshot
    assert folder is not None
    found: dict[tuple[FingerprintMode, int], ModelIdentity] = {}
    try:
        for copy in usable:
            how = (copy.identity.mode, copy.identity.scheme)
            if how not in found:
                found[how] = identify(place.ref, folder, *how)
            if not differences(copy.identity, found[how]):
                return ModelCheck(place.ref, "match", [], _caveat(copy.identity))
    except OSError as e:
        return ModelCheck(place.ref, "mismatch", [f"cannot read {folder}: {e}"])
    recorded = usable[0].identity
    return ModelCheck(place.ref, "mismatch",
                      differences(recorded, found[(recorded.mode, recorded.scheme)]))
