"""Reproducing a bundle: verify it, re-run its study (or a sample) in the same images, compare."""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.bundle.archive import DEFAULT_LIMITS, Limits, extract, read_bounded
from harness.bundle.verify import verify_root
from harness.config.experiment import Runner
from harness.config.sweep import Plan
from harness.errors import UserInputError
from harness.results.events import Note, Observer, ignore
from harness.results.schema import Manifest


@dataclass
class Reproduction:
    """A reproduction: where it ran, the comparison table, and what to know about it."""

    study_dir: Path
    comparison: pd.DataFrame
    notes: list[str]
    runs_done: int
    runs_total: int


def sample_runs(plan: Any, n: int | None, seed: int) -> list[Any]:
    """All planned runs, or n of them spread over as many experiments as possible (seeded)."""
    runs = list(plan.runs)
    if n is None or n >= len(runs):
        return runs
    rng = random.Random(seed)
    by_exp: dict[str, list[Any]] = {}
    for run in runs:
        by_exp.setdefault(run.experiment_id, []).append(run)
    order = list(by_exp)
    rng.shuffle(order)
    for group in by_exp.values():
        rng.shuffle(group)
    chosen: list[Any] = []
    while len(chosen) < n:
        for exp_id in order:
            if by_exp[exp_id] and len(chosen) < n:
                chosen.append(by_exp[exp_id].pop())
    return sorted(chosen, key=lambda r: r.position)


def _sub_plan(plan: Plan, chosen: list[Any]) -> Plan:
    """The plan reduced to the chosen runs (and their experiments), renumbered in order."""
    exp_ids = {r.experiment_id for r in chosen}
    return Plan(
        study=plan.study, axes=plan.axes,
        experiments=[e for e in plan.experiments if e.id in exp_ids],
        runs=[r.model_copy(update={"position": i}) for i, r in enumerate(chosen)],
        execution=plan.execution, warnings=plan.warnings,
    )


def _replan_note(study: Any, plan: Plan) -> str | None:
    """Why this harness's expansion of study.yaml is not the bundle's plan, or None."""
    from harness.config.sweep import expand

    try:
        replanned = {e.id for e in expand(study).experiments}
    except UserInputError as e:
        return f"this harness no longer accepts study.yaml ({e}); using plan.json"
    if replanned != {e.id for e in plan.experiments}:
        return ("this harness expands study.yaml into different experiment ids than the "
                "bundle's plan; the bundle's plan.json is used as is")
    return None


def _original_images(manifest: Manifest, plan: Plan,
                     exp_ids: set[str]) -> dict[str, set[tuple[str, str | None]]]:
    """Per backend, the (tag, id) pairs of the images the sampled experiments ran in."""
    used: dict[str, set[tuple[str, str | None]]] = {}
    for rec in manifest.runs:
        if rec.image and rec.experiment_id in exp_ids:
            name = str(plan.experiment(rec.experiment_id).backend)
            used.setdefault(name, set()).add((rec.image.tag, rec.image.id))
    return used


def _choose_images(runtime: Any, manifest: Manifest, plan: Plan, exp_ids: set[str],
                   images: dict[str, str], notes: list[str]) -> None:
    """Point each backend at its original image (by id) where this engine has it; say what."""
    for backend_name, seen in _original_images(manifest, plan, exp_ids).items():
        if len(seen) != 1:
            notes.append(f"{backend_name}: the original runs used {len(seen)} images; using "
                         "the study's tag")
            continue
        tag, image_id = next(iter(seen))
        if image_id and runtime.prepare(image_id) is not None:
            images[backend_name] = image_id
            notes.append(f"{backend_name}: using the original image {tag} ({image_id[:19]})")
        elif runtime.prepare(tag) is not None:
            images[backend_name] = tag
            notes.append(f"{backend_name}: the original image {image_id} is not here; using "
                         f"{tag} as it is now (a different build)")
        else:
            notes.append(f"{backend_name}: neither image {image_id} nor tag {tag} is here; "
                         f"build it with 'harness images build --backend {backend_name}'")


def _images_for(runtime: Any, manifest: Manifest, plan: Plan, exp_ids: set[str],
                images: dict[str, str], notes: list[str]) -> dict[str, str]:
    """The images the reproduction runs in, with notes on how they differ from the original's."""
    images = dict(images)
    if runtime.name == "docker":
        if manifest.runner == "local":
            notes.append("the original ran with the local runner (no image); this reproduction "
                         "runs in containers of the study's default images")
        _choose_images(runtime, manifest, plan, exp_ids, images, notes)
    elif manifest.runner == "docker":
        notes.append("the original ran in containers; the local runner uses this Python "
                     "environment instead of the bundle's images")
    return images


def _check_options(runs: int | None) -> None:
    if runs is not None and runs < 1:
        raise UserInputError(f"--runs: expected at least 1, got {runs}")


def reproduce(
    bundle: Path,
    *,
    runs: int | None = None,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    observer: Observer = ignore,
    limits: Limits = DEFAULT_LIMITS,
) -> Reproduction:
    """Verify a bundle, re-run its study (or a sample) with the same images, and compare."""
    from harness.analysis import report as report_mod
    from harness.analysis.compare import compare
    from harness.analysis.stats import summarize
    from harness.analysis.table import collect
    from harness.config.load import load_study
    from harness.controller.lifecycle import new_study_dir
    from harness.controller.loop import StudyRun
    from harness.controller.runtimes import select_runtime
    from harness.results import manifest as manifest_io
    from harness.results.io import atomic_write_json

    _check_options(runs)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as tmp:
        root = extract(Path(bundle), Path(tmp), limits)
        verify_root(root, limits)
        study = load_study(root / "study.yaml")
        plan = Plan.model_validate_json(read_bounded(root, "plan.json", limits))
        manifest = Manifest.model_validate_json(read_bounded(root, "manifest.json", limits))
        original = summarize(collect(root))
        note = _replan_note(study, plan)
        notes += [note] if note else []
        chosen = sample_runs(plan, runs, plan.execution.seed)
        sub_plan = _sub_plan(plan, chosen)
        runtime, why = select_runtime(runner or study.execution.runner)
        images = _images_for(runtime, manifest, plan, {r.experiment_id for r in chosen},
                             dict(study.images), notes)
        study = study.model_copy(update={"images": images})
        out_root = Path(output_dir) if output_dir else Path(study.output_dir)
        new_dir = new_study_dir(out_root, f"{study.name}-reproduce")
        shutil.copyfile(root / "study.yaml", new_dir / "study.yaml")
        atomic_write_json(new_dir / "plan.json", sub_plan)
        new_manifest = manifest_io.new_manifest(sub_plan, root / "study.yaml")
        new_manifest.runner = runtime.name
        new_manifest.runner_reason = f"{why}; reproducing bundle {Path(bundle).name}"
        manifest_io.save(new_manifest, new_dir)
        original.to_csv(new_dir / "original-summary.csv", index=False)
    observer(Note(f"Reproducing {len(chosen)} of {len(plan.runs)} runs -> {new_dir}"))
    observer(Note(f"Runner: {runtime.name} ({why})"))
    final = StudyRun(study, sub_plan, new_dir, runtime, new_manifest, observer=observer).execute()
    rep = report_mod.build(new_dir)
    comparison = compare(original, rep.summary)
    comparison.to_csv(new_dir / "comparison.csv", index=False)
    done = sum(r.status == "done" for r in final.runs)
    return Reproduction(new_dir, comparison, notes, done, len(final.runs))
