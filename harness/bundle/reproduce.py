"""Reproducing a bundle: verify it, re-run its study (or a sample) in the same images, compare."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.bundle.archive import DEFAULT_LIMITS, Limits, extract, read_bounded
from harness.bundle.carry import WORKLOAD
from harness.bundle.layout import PROVENANCE, carried_file
from harness.bundle.models import (
    ModelCheck,
    ModelPlace,
    Recorded,
    check_model,
    locate_models,
    recorded_models,
)
from harness.bundle.reimages import ImageChoice, carried_archives, choose_images
from harness.bundle.verify import verify_root
from harness.config.datasets import DatasetFile
from harness.config.experiment import Runner
from harness.config.sweep import Plan
from harness.errors import EnvironmentProblem, UserInputError
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
    models: list[ModelCheck] = field(default_factory=list)


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


def _check_options(runs: int | None) -> None:
    if runs is not None and runs < 1:
        raise UserInputError(f"--runs: expected at least 1, got {runs}")


@dataclass
class ReviewerModels:
    """Where a reviewer keeps the study's models: ``--model NAME=PATH``, ``--model-root DIR``."""

    mapped: dict[str, Path] = field(default_factory=dict)
    root: Path | None = None
    #: run even when a model's fingerprint differs from the bundle's (recorded in the comparison)
    accept_mismatch: bool = False


@dataclass
class _Setup:
    """Everything decided before the first container starts."""

    study: Any
    plan: Plan
    sub_plan: Plan
    manifest: Manifest
    original: pd.DataFrame
    runtime: Any
    why: str
    places: list[ModelPlace]
    checks: dict[str, ModelCheck]
    images: ImageChoice
    notes: list[str]


def _read_prov(root: Path, limits: Limits) -> dict[str, Any]:
    try:
        data = json.loads(read_bounded(root, f"{PROVENANCE}/provenance.json", limits))
    except FileNotFoundError:
        return {}
    return data if isinstance(data, dict) else {}


def _model_checks(recorded: dict[str, list[Recorded]], places: list[ModelPlace],
                  accept: bool) -> tuple[dict[str, ModelCheck], list[str]]:
    """Each reviewer's model checked against the bundle; refused on a mismatch unless accepted."""
    checks = {p.ref: check_model(p, recorded.get(p.ref, [])) for p in places}
    notes = [f"model {p.ref}: {p.folder or p.snapshot} ({p.why}); fingerprint "
             f"{checks[p.ref].summary()}" + (f" ({checks[p.ref].caveat})"
                                             if checks[p.ref].caveat else "") for p in places]
    bad = [c for c in checks.values() if c.status == "mismatch"]
    if bad and not accept:
        raise UserInputError(
            "bundle reproduce: the model on this machine is not the one the runs measured; "
            "nothing was started (map the right copy with --model NAME=PATH, or run anyway "
            "with --accept-model-mismatch, which comparison.csv records)",
            problems=[f"{c.ref}: {d}" for c in bad for d in c.detail])
    return checks, notes


def _prepare(root: Path, runs: int | None, runner: Runner | None, reviewer: ReviewerModels,
             limits: Limits) -> _Setup:
    """Read the verified bundle, find the models and images, and run the preflight."""
    from harness.analysis.stats import summarize
    from harness.analysis.table import collect
    from harness.config.load import load_study
    from harness.controller.preflight import check_study
    from harness.controller.runtimes import select_runtime

    study = load_study(root / "study.yaml")
    plan = Plan.model_validate_json(read_bounded(root, "plan.json", limits))
    manifest = Manifest.model_validate_json(read_bounded(root, "manifest.json", limits))
    note = _replan_note(study, plan)
    notes = [note] if note else []
    sub_plan = _sub_plan(plan, sample_runs(plan, runs, plan.execution.seed))
    runtime, why = select_runtime(runner or study.execution.runner)
    working_dir = Path(manifest.working_dir) if manifest.working_dir else None
    recorded = recorded_models(root, [r.run_id for r in manifest.runs if r.status == "done"])
    places = locate_models(sorted({e.experiment.model for e in sub_plan.experiments}),
                           mapped=reviewer.mapped, model_root=reviewer.root,
                           working_dir=working_dir, hf_cache=study.hf_cache,
                           revisions={ref: copies[0].identity.revision for ref, copies
                                      in recorded.items() if copies[0].identity.revision})
    checks, model_notes = _model_checks(recorded, places, reviewer.accept_mismatch)
    choice = choose_images(runtime, manifest, plan, {e.id for e in sub_plan.experiments},
                           dict(study.images), carried_archives(root, _read_prov(root, limits)))
    study = study.model_copy(update={"images": choice.images})
    found = check_study(study, sub_plan, runtime, origin="bundle reproduce",
                        model_base=working_dir, dataset_base=root,
                        known=carried_datasets(root, _read_prov(root, limits)),
                        models=_mapped(places))
    if found.errors:
        raise EnvironmentProblem("bundle reproduce: nothing was started:\n"
                                 + "\n".join(f"  - {p}" for p in found.errors))
    return _Setup(study, plan, sub_plan, manifest, summarize(collect(root)), runtime, why,
                  places, checks, choice, notes + model_notes + choice.notes + found.warnings)


def _mapped(places: list[ModelPlace]) -> dict[str, Path]:
    return {p.ref: p.folder for p in places if p.folder is not None}


def carried_datasets(root: Path, prov: dict[str, Any]) -> list[DatasetFile]:
    """The prompt files the bundle carries, each pointing at its copy under ``root``."""
    found = []
    for entry in prov.get("workload") or []:
        copy = carried_file(root, entry.get("file"), WORKLOAD)
        if copy is not None and copy.is_file():  # verified against its hash already
            found.append(DatasetFile(field=entry.get("field", "workload.dataset"),
                                     source=entry["ref"],
                                     path=str(copy), sha256=entry["sha256"]))
    return found


def _carry_prompts(datasets: list[DatasetFile], root: Path,
                   new_dir: Path) -> tuple[list[DatasetFile], list[str]]:
    """Copy the bundle's prompt files into the new study folder; the new entries and notes."""
    moved, notes = [], []
    for entry in datasets:
        rel = Path(entry.path).relative_to(root / WORKLOAD)
        (new_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry.path, new_dir / rel)
        moved.append(entry.model_copy(update={"path": str(new_dir / rel)}))
        notes.append(f"prompt file {entry.source}: the bundle's copy (sha256 "
                     f"{entry.sha256[:12]}...) is {new_dir / rel}")
    return moved, notes


def identity_columns(comparison: pd.DataFrame, setup: _Setup, final: Manifest) -> pd.DataFrame:
    """comparison.csv's image and model columns: recorded and used image ids, model check."""
    def ids(manifest: Manifest, exp_id: str) -> str:
        return ";".join(sorted({r.image.id or r.image.tag for r in manifest.runs
                                if r.experiment_id == exp_id and r.image and r.status == "done"}))

    out = comparison.copy()
    exp_ids = list(out["experiment_id"]) if not out.empty else []
    old = [ids(setup.manifest, e) for e in exp_ids]
    new = [ids(final, e) for e in exp_ids]
    out["original_image_id"] = old
    out["image_id"] = new
    out["same_image"] = [a == b if a and b else None for a, b in zip(old, new, strict=True)]
    out["model_check"] = [setup.checks[setup.plan.experiment(e).model].summary()
                          if setup.plan.experiment(e).model in setup.checks else "not checked"
                          for e in exp_ids]
    return out


def reproduce(
    bundle: Path,
    *,
    runs: int | None = None,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    observer: Observer = ignore,
    limits: Limits = DEFAULT_LIMITS,
    models: ReviewerModels | None = None,
) -> Reproduction:
    """Verify a bundle, find its models and images, re-run its study (or a sample), compare.

    Every check (bundle, model fingerprints, images, engine) runs before the first container;
    each note (``Reproduction.notes``) goes to ``observer`` as a Note before the runs start.
    """
    from harness.analysis import report as report_mod
    from harness.analysis.compare import compare
    from harness.controller.lifecycle import new_study_dir
    from harness.controller.loop import StudyRun
    from harness.results import manifest as manifest_io
    from harness.results.io import atomic_write_json

    _check_options(runs)
    with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as tmp:
        root = extract(Path(bundle), Path(tmp), limits)
        verify_root(root, limits)
        setup = _prepare(root, runs, runner, models or ReviewerModels(), limits)
        for text in setup.notes:  # images loaded, models checked: said before any run starts
            observer(Note(text))
        out_root = Path(output_dir) if output_dir else Path(setup.study.output_dir)
        new_dir = new_study_dir(out_root, f"{setup.study.name}-reproduce")
        shutil.copyfile(root / "study.yaml", new_dir / "study.yaml")
        carried = carried_datasets(root, _read_prov(root, limits))
        datasets, more = _carry_prompts(carried, root, new_dir)
        setup.notes += more
        for text in more:
            observer(Note(text))
        atomic_write_json(new_dir / "plan.json", setup.sub_plan)
        new_manifest = manifest_io.new_manifest(setup.sub_plan, root / "study.yaml",
                                                working_dir=Path.cwd())
        new_manifest.runner = setup.runtime.name
        new_manifest.runner_reason = f"{setup.why}; reproducing bundle {Path(bundle).name}"
        new_manifest.datasets = datasets
        manifest_io.save(new_manifest, new_dir)
        setup.original.to_csv(new_dir / "original-summary.csv", index=False)
    atomic_write_json(new_dir / "reproduce.json", {
        "bundle": Path(bundle).name, "notes": setup.notes, "images_loaded": setup.images.loaded,
        "models": [{"ref": p.ref, "folder": str(p.folder or p.snapshot), "why": p.why,
                    "check": setup.checks[p.ref].summary()} for p in setup.places],
    })
    observer(Note(f"Reproducing {len(setup.sub_plan.runs)} of {len(setup.plan.runs)} runs "
                  f"-> {new_dir}"))
    observer(Note(f"Runner: {setup.runtime.name} ({setup.why})"))
    final = StudyRun(setup.study, setup.sub_plan, new_dir, setup.runtime, new_manifest,
                     observer=observer, models=_mapped(setup.places)).execute()
    rep = report_mod.build(new_dir)
    comparison = identity_columns(compare(setup.original, rep.summary), setup, final)
    comparison.to_csv(new_dir / "comparison.csv", index=False)
    done = sum(r.status == "done" for r in final.runs)
    return Reproduction(new_dir, comparison, setup.notes, done, len(final.runs),
                        list(setup.checks.values()))
