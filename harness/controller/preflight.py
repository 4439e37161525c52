"""What will fail before a container starts: where each model lives, which images are present."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.backends import registry
from harness.config.experiment import Experiment
from harness.config.study import Study
from harness.config.sweep import Plan
from harness.controller.runtimes.base import Runtime
from harness.errors import RunFailure
from harness.results.reasons import FailureReason

#: a model reference that starts like this is a folder, never a hub id
PATH_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True)
class ModelLocation:
    """Where a model lives on the host: a folder, or a hub id in a cache."""

    ref: str
    host_path: Path | None
    hf_cache: Path | None


def default_hf_cache() -> Path:
    """The host's Hugging Face cache ($HF_HOME, else ~/.cache/huggingface)."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _from(base: Path | None, path: Path) -> Path:
    return path if path.is_absolute() or base is None else base / path


def locate_model(model: str, hf_cache: str | None, base: Path | None = None) -> ModelLocation:
    """Resolve a model reference to a host folder or a cached hub id (paths from ``base``).

    ``hf_cache`` is the study's cache folder, if it names one (else $HF_HOME's).
    """
    candidate = _from(base, Path(model).expanduser())
    if candidate.exists():
        return ModelLocation(model, candidate.resolve(), None)
    if model.startswith(PATH_PREFIXES):
        raise RunFailure(
            f"the model folder {model!r} does not exist (looked at {candidate})",
            reason=FailureReason.MODEL_NOT_FOUND,
        )
    cache = _from(base, Path(hf_cache).expanduser()) if hf_cache else default_hf_cache()
    return ModelLocation(model, None, cache.resolve() if cache.exists() else None)


def image_for(images: Mapping[str, str], backend: str, device: str) -> str | None:
    """The image a run of this backend and device uses (the study's override or the default).

    None when the study names none and the backend has no recipe for the device (a plug-in
    that runs with the local runner only).
    """
    return images.get(backend) or registry.get(backend).image_tag(device)


def images_needed(study: Study, plan: Plan) -> list[tuple[str, str]]:
    """The (backend, device) pairs of the default images the plan's runs use, in plan order.

    Backends whose image the study names in its ``images:`` block are left out: those are the
    user's own images, not built by this harness.
    """
    pairs: list[tuple[str, str]] = []
    for planned in plan.experiments:
        pair = (planned.experiment.backend, planned.experiment.device)
        if pair[0] not in study.images and pair not in pairs:
            pairs.append(pair)
    return pairs


def preflight(
    experiments: Iterable[Experiment],
    runtime: Runtime,
    *,
    images: Mapping[str, str],
    hf_cache: str | None,
    base: Path | None,
) -> list[str]:
    """Warnings about runs that will fail as things stand.

    Missing images or model folders, or a model folder that rules an experiment out.
    """
    notes = []
    models: dict[str, Path | None] = {}
    tags: set[str] = set()
    for exp in experiments:
        if exp.model not in models:
            models[exp.model] = None
            try:
                models[exp.model] = locate_model(exp.model, hf_cache, base).host_path
            except RunFailure as e:
                notes.append(f"{e}; its runs will fail unless it appears")
        folder = models[exp.model]
        if folder is not None:  # checks that read the model's files (a quantization config)
            notes += [f"experiment {exp.id}: {why}; its runs will fail"
                      for why in exp.spec.problems_with_model(exp, folder)]
        tag = image_for(images, exp.backend, exp.device)
        if runtime.name == "docker" and tag is None:
            notes.append(f"backend {exp.backend} has no image for {exp.device}; its runs will "
                         "fail in containers unless the study names one (images:) or runs "
                         "with the local runner")
        elif runtime.name == "docker" and tag is not None and tag not in tags:
            tags.add(tag)
            if runtime.prepare(tag) is None:
                notes.append(f"image {tag!r} is not present; runs of backend {exp.backend} will "
                             f"fail unless it is built ('harness images build --backend "
                             f"{exp.backend} --device {exp.device}')")
    return notes


def study_preflight(study: Study, plan: Plan, runtime: Runtime, base: Path | None) -> list[str]:
    """preflight() over a study's planned experiments, with its images and cache."""
    return preflight((p.experiment for p in plan.experiments), runtime, images=study.images,
                     hf_cache=study.hf_cache, base=base)
