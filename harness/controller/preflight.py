"""What will fail, found before a container starts: models, the files a study names, images.

``study plan``, every study start (and resume) and ``harness run`` run the same checks; errors
stop them with exit code 2 and nothing started, warnings are said first. What this host lacks
and can get before the runs start (a hub id not in the cache, an image not built) is a warning
for a plan and an error at a start, where every run would fail on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.backends import registry
from harness.backends.weights import cached_snapshots, model_folder_problem
from harness.config.datasets import DatasetFile
from harness.config.experiment import Experiment
from harness.config.study import Study
from harness.config.sweep import Plan
from harness.controller.datasets import resolve_files
from harness.controller.gpucheck import gpu_findings
from harness.controller.runtimes.base import Runtime
from harness.errors import RunFailure, UserInputError
from harness.model_identity import PATH_PREFIXES
from harness.results.reasons import FailureReason


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


def path_reason(model: str, base: Path | None) -> str | None:
    """Why a model reference that names no existing folder is still a path, never a hub id.

    A hub id is NAME or ORG/NAME; a reference that starts like a path, has more than one '/',
    or whose first part is a folder (``models/tiny`` where ``models/`` exists) is a path.
    """
    if model.startswith(PATH_PREFIXES):
        return "it starts like a path"
    if model.count("/") > 1:
        return "it has more than one '/' (a hub id is ORG/NAME)"
    head = model.split("/", 1)[0]
    if "/" in model and _from(base, Path(head)).is_dir():
        return f"{_from(base, Path(head)).absolute()} is a folder"
    return None


def hub_cache(hf_cache: str | None, base: Path | None) -> Path:
    """The Hugging Face cache hub ids are read from: the study's ``hf_cache``, else $HF_HOME's."""
    return _from(base, Path(hf_cache).expanduser()) if hf_cache else default_hf_cache()


def locate_model(model: str, hf_cache: str | None, base: Path | None = None,
                 mapped: Mapping[str, Path] | None = None) -> ModelLocation:
    """Resolve a model reference to a host folder or a cached hub id (paths from ``base``).

    ``hf_cache`` is the study's cache folder, if it names one (else $HF_HOME's); ``mapped``
    names a folder for some references (a reviewer's ``--model NAME=PATH``). A missing folder
    is RunFailure(model_not_found); so is a reference that can only be a path (``path_reason``)
    unless the cache holds a hub id of that name.
    """
    if mapped and model in mapped:
        folder = Path(mapped[model]).expanduser()
        if not folder.is_dir():
            raise RunFailure(f"the model folder {str(folder)!r} given for {model!r} does not "
                             "exist or is not a folder", reason=FailureReason.MODEL_NOT_FOUND)
        return ModelLocation(model, folder.resolve(), None)
    candidate = _from(base, Path(model).expanduser())
    if candidate.exists():
        return ModelLocation(model, candidate.resolve(), None)
    cache = hub_cache(hf_cache, base)
    why = path_reason(model, base)
    if why is not None and (model.startswith(PATH_PREFIXES) or not cached_snapshots(cache, model)):
        because = "" if model.startswith(PATH_PREFIXES) else (
            f"; it is read as a path, not a Hugging Face hub id, because {why}")
        raise RunFailure(
            f"the model folder {model!r} does not exist (looked at {candidate.absolute()}){because}",
            reason=FailureReason.MODEL_NOT_FOUND,
        )
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


@dataclass
class Findings:
    """What the checks before a start found: errors stop it, warnings are said first."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the files the experiments name, resolved, checked and hashed
    datasets: list[DatasetFile] = field(default_factory=list)

    def raise_errors(self, origin: Path | str, what: str = "study") -> None:
        """UserInputError listing every error (nothing may start), if there is any."""
        if self.errors:
            raise UserInputError(f"{origin}: the {what} cannot run as it is; nothing was started",
                                 problems=self.errors)


def model_findings(model: str, hf_cache: str | None, base: Path | None, origin: str,
                   found: Findings, mapped: Mapping[str, Path] | None = None, *,
                   at_start: bool = True) -> None:
    """Add what is wrong with one model reference: a missing or wrong folder, an uncached id.

    An uncached hub id is an error ``at_start`` (runs are offline, so each would fail), else
    a warning (a plan may be made on a host that lacks it).
    """
    try:
        where = locate_model(model, hf_cache, base, mapped)
    except RunFailure as e:
        found.errors.append(f"{origin}: model {model!r}: {e}; fix the path (relative model "
                            f"paths are read from the working folder, {Path(base or '.').absolute()})")
        return
    if where.host_path is not None:
        why = model_folder_problem(where.host_path)
        if why:
            found.errors.append(f"{origin}: model {model!r}: {why}; point model: at the folder "
                                "that holds config.json and the weights")
        return
    cache = hub_cache(hf_cache, base)
    if not cached_snapshots(cache, model):
        missing = (
            f"{origin}: model {model!r} is not a folder (looked at "
            f"{_from(base, Path(model)).absolute()}) and has no snapshot in the Hugging Face "
            f"cache {cache} (models--{model.replace('/', '--')}/snapshots); runs are offline, so "
            "they will fail unless it is downloaded into that cache first (or hf_cache: names "
            "the cache that holds it, or model: a folder)")
        (found.errors if at_start else found.warnings).append(missing)


def model_fit_findings(experiments: Iterable[Experiment], hf_cache: str | None,
                       base: Path | None, origin: str, found: Findings,
                       mapped: Mapping[str, Path] | None = None) -> None:
    """Add what a model folder's own files rule out (a quantization its checkpoint refuses)."""
    folders: dict[str, Path | None] = {}
    for exp in experiments:
        if exp.model not in folders:
            try:
                folders[exp.model] = locate_model(exp.model, hf_cache, base, mapped).host_path
            except RunFailure:
                folders[exp.model] = None  # said by model_findings
        folder = folders[exp.model]
        if folder is not None:
            found.errors += [f"{origin}: experiment {exp.id}: {why}"
                             for why in exp.spec.problems_with_model(exp, folder)]


def image_findings(experiments: Iterable[Experiment], runtime: Runtime | None,
                   images: Mapping[str, str], found: Findings, *, at_start: bool = True) -> None:
    """Add each image that the docker runner would need and this engine lacks.

    Errors ``at_start`` (nothing builds images during a run: every run of the backend would
    fail with image_missing), else warnings.
    """
    if runtime is None or runtime.name != "docker":
        return
    said = found.errors if at_start else found.warnings
    tags: set[str] = set()
    for backend, device in dict.fromkeys((exp.backend, exp.device) for exp in experiments):
        tag = image_for(images, backend, device)
        if tag is None:
            said.append(
                f"backend {backend} has no image for {device}; its runs will fail in "
                "containers unless the study names one (images:) or runs with the local runner")
        elif tag not in tags:
            tags.add(tag)
            if runtime.prepare(tag) is None:
                said.append(
                    f"image {tag!r} is not present; runs of backend {backend} will fail "
                    f"unless it is built first ('harness images build --backend {backend} "
                    f"--device {device}', or 'harness images build --study FILE' for all)")


def check_experiments(
    experiments: Sequence[Experiment],
    runtime: Runtime | None,
    *,
    origin: str,
    images: Mapping[str, str],
    hf_cache: str | None,
    model_base: Path | None,
    dataset_base: Path,
    known: Sequence[DatasetFile] = (),
    models: Mapping[str, Path] | None = None,
    at_start: bool = True,
    images_here: bool = True,
) -> Findings:
    """Everything that would make runs fail, found before any of them starts.

    Errors: a model folder that is missing or holds no model (or a path-like reference that
    names none), a file the study names (a prompts file) that is missing, unreadable, malformed
    or too short. A hub id that is not in the Hugging Face cache and an image the docker runner
    lacks are errors ``at_start`` and warnings for a plan (both can be fixed on this host
    before the runs start); images stay warnings where they are not ``images_here`` (Slurm
    nodes have their own). ``known``: files a resumed study recorded.
    """
    found = Findings()
    for model in dict.fromkeys(exp.model for exp in experiments):
        model_findings(model, hf_cache, model_base, origin, found, models, at_start=at_start)
    model_fit_findings(experiments, hf_cache, model_base, origin, found, models)
    files = resolve_files(experiments, dataset_base, origin, known)
    found.errors += files.errors
    found.warnings += files.notes
    found.datasets = files.files
    image_findings(experiments, runtime, images, found, at_start=at_start and images_here)
    return found


def check_study(study: Study, plan: Plan, runtime: Runtime | None, *, origin: str,
                model_base: Path | None, dataset_base: Path,
                known: Sequence[DatasetFile] = (),
                models: Mapping[str, Path] | None = None, at_start: bool = True) -> Findings:
    """check_experiments() over a study's experiments, and whether its GPUs take their gpu: settings.

    With ``at_start`` False (a plan, perhaps made on another machine than the one that runs
    it), what this host lacks is a warning: GPUs that cannot be reached or changed, hub ids
    not cached, images not built. Under the Slurm executor images are always warnings (the
    nodes run the containers), and this host's GPUs are not the runs' GPUs: each job's node
    checks its own when it applies the settings (a refusal fails that run with
    gpu_settings_failed), so none are checked here.
    """
    experiments = [p.experiment for p in plan.experiments]
    found = check_experiments(experiments, runtime, origin=origin,
                              images=study.images, hf_cache=study.hf_cache,
                              model_base=model_base, dataset_base=dataset_base, known=known,
                              models=models, at_start=at_start,
                              images_here=study.execution.executor != "slurm")
    if study.execution.executor == "slurm":
        return found
    gpu = gpu_findings(experiments, study.execution, origin, probe_clocks=at_start)
    found.errors += gpu.values + (gpu.host if at_start else [])
    found.warnings += [] if at_start else [
        f"{p}; a start on this machine would refuse it" for p in gpu.host]
    return found
