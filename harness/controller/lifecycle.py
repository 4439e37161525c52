"""The study folder: a new one named NAME-STAMP, resuming one, adopting a changed study (--force)."""

from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.config.datasets import DatasetFile
from harness.config.experiment import Runner
from harness.config.load import load_study, plan_study
from harness.config.study import Study
from harness.config.sweep import Plan
from harness.controller.loop import StudyRun
from harness.controller.preflight import check_study
from harness.controller.rundirs import set_aside
from harness.controller.runtimes import RUNNERS, select_runtime
from harness.controller.runtimes.base import Runtime
from harness.controller.runtimes.local import LocalRuntime
from harness.errors import EnvironmentProblem, StorageProblem, UserInputError
from harness.results import events
from harness.results import manifest as manifest_io
from harness.results.io import atomic_write_json, sha256_file
from harness.results.schema import Manifest


@dataclass
class Prepared:
    """A study ready to execute, and what the user should be told first."""

    run: StudyRun
    study_dir: Path
    runner_why: str
    notes: list[str] = field(default_factory=list)


def new_study_dir(root: Path, name: str) -> Path:
    """Create ROOT/NAME-YYYYmmddTHHMMSSZ (never reusing an existing folder)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{name}-{stamp}"
    suffix = 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            suffix += 1
            path = root / f"{name}-{stamp}-{suffix}"
        except OSError as e:
            raise StorageProblem(f"cannot create the folder {path}: {e.strerror}") from e


def start_study(
    file: Path,
    *,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    observer: events.Observer = events.ignore,
) -> Prepared:
    """Validate a study file, create its folder, plan and manifest; nothing runs yet."""
    study, plan = plan_study(file)
    runtime, why = _select(runner or study.execution.runner, study)
    base = Path.cwd()
    found = check_study(study, plan, runtime, origin=str(file), model_base=base,
                        dataset_base=Path(file).parent)
    found.raise_errors(file)
    root = output_dir or Path(study.output_dir)
    if root.exists() and not root.is_dir():
        raise StorageProblem(f"output folder {root} is a file, not a folder")
    study_dir = new_study_dir(root, study.name)
    try:
        shutil.copyfile(file, study_dir / "study.yaml")
    except OSError as e:
        raise StorageProblem(f"cannot write {study_dir / 'study.yaml'}: {e.strerror}") from e
    atomic_write_json(study_dir / "plan.json", plan)
    manifest = manifest_io.new_manifest(plan, file, working_dir=base)
    manifest.runner = runtime.name
    manifest.runner_reason = why
    manifest.datasets = found.datasets
    manifest_io.save(manifest, study_dir)
    run = StudyRun(study, plan, study_dir, runtime, manifest, observer=observer, base_dir=base)
    return Prepared(run, study_dir, why, found.warnings)


def _select(choice: Runner, study: Study) -> tuple[Runtime, str]:
    """The runtime for ``choice``; under Slurm, this host may lack the engine the nodes have."""
    try:
        return select_runtime(choice)
    except EnvironmentProblem as e:
        if study.execution.executor != "slurm":
            raise
        return LocalRuntime(), (f"{e}; the Slurm jobs start their runs on the nodes, so this "
                                "host checks the study without an engine")


def _plan_changes(old: Plan, new: Plan) -> list[str]:
    lines = []
    old_ids = {e.id: e for e in old.experiments}
    new_ids = {e.id: e for e in new.experiments}
    for eid in old_ids.keys() - new_ids.keys():
        lines.append(f"experiment {eid} {old_ids[eid].params or ''} is no longer planned")
    for eid in new_ids.keys() - old_ids.keys():
        lines.append(f"experiment {eid} {new_ids[eid].params or ''} is new")
    before = old.execution.model_dump()
    after = new.execution.model_dump()
    for key in before:
        if before[key] != after[key]:
            lines.append(f"execution.{key}: {before[key]!r} -> {after[key]!r}")
    return lines


def study_differences(
    old_text: str | None, new_text: str, old_plan: Plan, new_plan: Plan, old_name: str, new_name: str
) -> list[str]:
    """Readable differences between the study a folder began with and a new version of it."""
    lines = []
    if old_text is not None:
        diff = list(difflib.unified_diff(
            old_text.splitlines(), new_text.splitlines(), old_name, new_name, n=1, lineterm=""))
        lines += diff[:80] + ([f"... {len(diff) - 80} more diff lines"] if len(diff) > 80 else [])
    return lines + _plan_changes(old_plan, new_plan)


def _archive(study_dir: Path, name: str) -> None:
    """Keep a superseded study.yaml/plan.json as NAME.previous-K.EXT."""
    path = study_dir / name
    stem, ext = name.split(".", 1)
    k = 1
    while (study_dir / f"{stem}.previous-{k}.{ext}").exists():
        k += 1
    shutil.copyfile(path, study_dir / f"{stem}.previous-{k}.{ext}")


def _read_folder(study_dir: Path) -> tuple[Manifest, Plan, str]:
    """A study folder's manifest, plan and study text (UserInputError if it is not one)."""
    try:
        manifest = manifest_io.load(study_dir)
    except FileNotFoundError as e:
        raise UserInputError(f"{study_dir}: no manifest.json; is this a study folder?") from e
    except ValueError as e:
        raise UserInputError(str(e)) from e  # read_model names the file and the problem
    try:
        old_plan = Plan.model_validate_json((study_dir / "plan.json").read_text("utf-8"))
        old_text = (study_dir / "study.yaml").read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise UserInputError(f"{study_dir}: study.yaml or plan.json is missing or invalid: {e}") from e
    if manifest_io.is_running(study_dir):
        raise UserInputError(f"{study_dir}: another controller is running this study "
                             f"({manifest_io.StudyLock(study_dir).holder() or 'holder unknown'})")
    return manifest, old_plan, old_text


@dataclass
class _Version:
    """The study a resume continues with, and how it differs from the folder's."""

    source: Path
    base: Path
    study: Study
    plan: Plan
    text: str
    changed: bool
    shown_old: str | None
    notes: list[str]
    #: where relative paths of the files it names are read from, and the files recorded
    datasets_base: Path
    known: list[DatasetFile] = field(default_factory=list)


def _given_file(file: Path, copy: Path, old_text: str) -> _Version:
    """The study file given with --file, compared with the folder's copy."""
    study, plan = plan_study(file)
    new_text = file.read_text(encoding="utf-8")
    try:
        old_study: Study | None = load_study(copy)
    except UserInputError:
        old_study = None
    changed = new_text != old_text and (
        old_study is None or old_study.model_dump() != study.model_dump())
    notes = ([f"{file} differs from {copy} only in comments or layout"]
             if new_text != old_text and not changed else [])
    return _Version(file, Path.cwd(), study, plan, new_text, changed, old_text, notes,
                    datasets_base=file.parent)


def _own_copy(copy: Path, manifest: Manifest, old_text: str) -> _Version:
    """The folder's own study.yaml (changed if it no longer matches the manifest's hash)."""
    base = Path(manifest.working_dir) if manifest.working_dir else Path.cwd()
    study, plan = plan_study(copy)
    changed = sha256_file(copy) != manifest.study_file_sha256
    # the original text is gone; the plan shows what changed. Its files are where the manifest
    # recorded them (a folder from before that read them from the working folder)
    return _Version(copy, base, study, plan, old_text, changed, None, [],
                    datasets_base=base, known=list(manifest.datasets))


def _resume_runtime(manifest: Manifest, runner: Runner | None,
                    study: Study) -> tuple[Runtime, str, list[str]]:
    """The runtime a resumed study continues with, why, and a note when it changes runner."""
    used = next((r for r in RUNNERS if r == manifest.runner), None)
    if runner is None and used is not None:
        runtime, _ = _select(used, study)
        why = f"continuing with the {runtime.name} runner this study used"
        if manifest.runner_reason:
            why += f" (chosen because {manifest.runner_reason})"
        return runtime, why, []
    runtime, why = _select(runner or study.execution.runner, study)
    notes = []
    if manifest.runner and runtime.name != manifest.runner:
        notes.append(f"this study ran with the {manifest.runner} runner; continuing with "
                     f"{runtime.name} makes its runs less comparable")
    manifest.runner_reason = f"{why} when the study was resumed"
    return runtime, why, notes


def resume_study(
    study_dir: Path,
    *,
    file: Path | None = None,
    runner: Runner | None = None,
    force: bool = False,
    keep_failed: bool = False,
    observer: events.Observer = events.ignore,
) -> Prepared:
    """Prepare a study folder to continue: done runs are kept, the rest will run.

    A study file that differs from the one the folder began with is refused unless forced;
    forced, runs of experiments still planned keep their records and the rest are set aside.
    """
    study_dir = Path(study_dir)
    manifest, old_plan, old_text = _read_folder(study_dir)
    copy = study_dir / "study.yaml"
    version = (_given_file(Path(file), copy, old_text) if file is not None
               else _own_copy(copy, manifest, old_text))
    study, plan, notes = version.study, version.plan, version.notes
    if study.name != manifest.study:
        raise UserInputError(f"{version.source}: study {study.name!r} is not the study in "
                             f"{study_dir} ({manifest.study!r})")
    differences: list[str] = []
    if version.changed:
        differences = study_differences(version.shown_old, version.text, old_plan, plan,
                                        str(copy), str(version.source))
        if not force:
            raise UserInputError(
                f"{version.source} differs from the study {study_dir} began with; refusing to "
                "resume (use --force to continue with the new version: runs of experiments "
                "still planned keep their results, others are set aside)",
                problems=differences or ["the file changed (sha256 differs)"],
            )
    runtime, why, runner_notes = _resume_runtime(manifest, runner, study)
    found = check_study(study, plan, runtime, origin=str(version.source),
                        model_base=version.base, dataset_base=version.datasets_base,
                        known=version.known)
    found.raise_errors(version.source)  # before the folder changes
    if version.changed:
        notes += _apply_change(study_dir, manifest, plan, version.source, differences)
    notes += runner_notes
    manifest.runner = runtime.name
    manifest.datasets = found.datasets
    run = StudyRun(study, plan, study_dir, runtime, manifest, observer=observer,
                   keep_failed=keep_failed, base_dir=version.base)
    todo = len(run.pending())
    done = sum(r.status == "done" for r in manifest.runs)
    notes.append(f"resuming: {done} runs done and kept, {todo} to run"
                 + (" (failed runs kept as they are)" if keep_failed else ""))
    return Prepared(run, study_dir, why, notes + found.warnings)


def _apply_change(
    study_dir: Path, manifest: Manifest, plan: Plan, source: Path, differences: list[str]
) -> list[str]:
    """Adopt a changed study (forced): new plan, records kept by run id, dropped runs aside."""
    notes = ["continuing with the changed study (--force):", *differences]
    records = {r.run_id: r for r in manifest.runs}
    fresh = {r.run_id: r for r in manifest_io.new_records(plan)}
    runs = []
    for planned in plan.runs:
        rec = records.get(planned.run_id) or fresh[planned.run_id]
        rec.position = planned.position
        runs.append(rec)
    for rec in manifest.runs:
        if rec.run_id not in fresh and (study_dir / "runs" / rec.run_id).exists():
            aside = set_aside(study_dir, rec.run_id, "dropped")
            notes.append(f"run {rec.run_id} ({rec.status}) is no longer planned; its folder is "
                         f"now {aside}")
    try:
        if source.resolve() != (study_dir / "study.yaml").resolve():
            _archive(study_dir, "study.yaml")
            shutil.copyfile(source, study_dir / "study.yaml")
        _archive(study_dir, "plan.json")
    except OSError as e:
        raise StorageProblem(f"cannot update {study_dir}: {e.strerror or e}") from e
    atomic_write_json(study_dir / "plan.json", plan)
    manifest.runs = runs
    manifest.study_file_sha256 = sha256_file(study_dir / "study.yaml")
    manifest_io.save(manifest, study_dir)
    return notes
