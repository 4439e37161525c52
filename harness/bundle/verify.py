"""Verifying a bundle: checksums, schemas, every planned run accounted for, the aggregates."""

from __future__ import annotations

import json
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from harness.bundle.archive import DEFAULT_LIMITS, Limits, extract, read_bounded, too_large
from harness.bundle.carry import WORKLOAD
from harness.bundle.images import IMAGES, check_archive
from harness.bundle.layout import PROVENANCE, SUMS, BundleInvalid, carried_file, list_files
from harness.config.sweep import Plan
from harness.results.io import sha256_file
from harness.results.schema import (
    MANIFEST_SCHEMA_VERSION,
    RESULT_SCHEMA_VERSION,
    ExperimentResult,
    Manifest,
)

AGGREGATE_RTOL = 1e-6
AGGREGATE_ATOL = 1e-12
#: problems that make recomputing the aggregates from the raw results meaningless
UNREADABLE = ("schema violation", "too large")


@dataclass
class Verified:
    """A bundle that passed verification: what was checked."""

    root_name: str
    files: int
    runs_done: int
    runs_failed: int
    runs_pending: int
    checks: list[str]


@dataclass
class _RunCounts:
    done: int = 0
    failed: int = 0
    pending: int = 0


def _read(root: Path, rel: str, limits: Limits, problems: list[str]) -> str | None:
    """A file's text through its size limit; None (and the problem) when missing or too big."""
    try:
        return read_bounded(root, rel, limits)
    except FileNotFoundError:
        problems.append(f"missing file: {rel}")
    except BundleInvalid as e:
        problems.extend(e.problems)
    except UnicodeDecodeError as e:
        problems.append(f"schema violation: {rel}: not UTF-8 text ({e})")
    return None


def _check_sums(root: Path, limits: Limits, problems: list[str]) -> int:
    """Check every file against SHA256SUMS; the number of files it lists."""
    if not (root / SUMS).exists():
        problems.append(f"{SUMS} is missing: nothing can be checked against it")
        return 0
    text = _read(root, SUMS, limits, problems)
    if text is None:
        return 0
    listed: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            problems.append(f"{SUMS} line {n}: not '<sha256>  <path>': {line[:80]!r}")
            continue
        listed[rel] = digest
    present = set(list_files(root)) - {SUMS}
    for rel, digest in sorted(listed.items()):
        if rel not in present:
            problems.append(f"missing file: {rel} is listed in {SUMS} but not in the bundle")
            continue
        size = (root / rel).stat().st_size
        if size > limits.of(rel):  # never read
            problems.append(too_large(rel, size, limits))
            continue
        actual = sha256_file(root / rel)
        if actual != digest:
            problems.append(f"changed file: {rel}: SHA-256 is {actual[:16]}..., "
                            f"{SUMS} says {digest[:16]}...")
    for rel in sorted(present - set(listed)):
        problems.append(f"added file: {rel} is in the bundle but not in {SUMS}")
    return len(listed)


def _schema_problem(rel: str, e: ValidationError) -> list[str]:
    return [
        f"schema violation: {rel}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: "
        f"{err['msg']}"
        for err in e.errors()[:10]
    ]


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


def _validate_json(root: Path, rel: str, model: type[Any], current: str, limits: Limits,
                   problems: list[str]) -> Any | None:
    """A versioned JSON file validated against its model; None (and the problems) if not."""
    text = _read(root, rel, limits, problems)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(f"schema violation: {rel}: not valid JSON ({e})")
        return None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version is None or _major(version) != _major(current):
        problems.append(f"schema violation: {rel}: schema_version {version!r}; this harness "
                        f"reads {_major(current)}.x")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems.extend(_schema_problem(rel, e))
        return None


def load_plan(root: Path, limits: Limits, problems: list[str]) -> Plan | None:
    """The bundle's plan.json, read through its size limit; None (and the problem) if not."""
    text = _read(root, "plan.json", limits, problems)
    if text is None:
        return None
    try:
        return Plan.model_validate_json(text)
    except ValidationError as e:
        problems.extend(_schema_problem("plan.json", e))
        return None


def _check_planned(root: Path, manifest: Manifest, plan: Plan, problems: list[str]) -> _RunCounts:
    """Each planned run is in the manifest, done with its result or failed with a reason."""
    counts = _RunCounts()
    records = {r.run_id: r for r in manifest.runs}
    for run in plan.runs:
        rec = records.get(run.run_id)
        run_dir = f"runs/{run.run_id}"
        if rec is None:
            problems.append(f"missing run: {run.run_id} is planned but manifest.json has no "
                            "record of it")
        elif rec.status == "done":
            counts.done += 1
            if not (root / run_dir / "result.json").exists():
                problems.append(f"missing run: {run.run_id} is done in manifest.json but "
                                f"{run_dir}/result.json is not in the bundle")
        elif rec.status in ("failed", "interrupted"):
            counts.failed += 1
            if not rec.reason and not (root / run_dir / "error.json").exists():
                problems.append(f"missing run: {run.run_id} is {rec.status} with no reason "
                                f"in manifest.json and no {run_dir}/error.json")
        else:
            counts.pending += 1
    return counts


def _check_unplanned(root: Path, manifest: Manifest, plan: Plan, problems: list[str]) -> None:
    """No run in the manifest or under runs/ that the plan does not name."""
    planned = {r.run_id for r in plan.runs}
    for run_id in sorted({r.run_id for r in manifest.runs} - planned):
        problems.append(f"unplanned run: {run_id} is in manifest.json but not in plan.json")
    runs_root = root / "runs"
    on_disk = {p.name for p in runs_root.iterdir() if p.is_dir()} if runs_root.exists() else set()
    for run_id in sorted(on_disk - planned - {".attempts"}):
        problems.append(f"unplanned run: runs/{run_id} is not in plan.json")


def _check_results(root: Path, limits: Limits, problems: list[str]) -> None:
    """Every result.json validates and names the run of its folder."""
    for result_path in sorted(root.glob("runs/*/result.json")):
        rel = result_path.relative_to(root).as_posix()
        result = _validate_json(root, rel, ExperimentResult, RESULT_SCHEMA_VERSION, limits,
                                problems)
        if result is not None and result.run.run_id != result_path.parent.name:
            problems.append(f"schema violation: {rel}: run.run_id is {result.run.run_id!r}, "
                            f"not the folder's name")


def _same(a: Any, b: Any) -> bool:
    fa, fb = pd.to_numeric(pd.Series([a, b]), errors="coerce")
    if math.isnan(fa) and math.isnan(fb):
        return True
    if math.isnan(fa) or math.isnan(fb):
        return False
    return math.isclose(fa, fb, rel_tol=AGGREGATE_RTOL, abs_tol=AGGREGATE_ATOL)


def _compare_summaries(stored: pd.DataFrame, recomputed: pd.DataFrame,
                       problems: list[str]) -> None:
    from harness.analysis.stats import METRICS, STAT_SUFFIXES

    for exp_id in sorted(set(recomputed.index) ^ set(stored.index)):
        where = "summary.csv" if exp_id in stored.index else "the raw results"
        problems.append(f"aggregates: experiment {exp_id} appears only in {where}")
    columns = ["runs_done", *(f"{m}_{s}" for m in METRICS for s in STAT_SUFFIXES)]
    missing = [c for c in columns if c not in stored.columns]
    if missing:
        problems.append(f"aggregates: summary.csv lacks column {missing[0]}")
        return
    for exp_id in recomputed.index.intersection(stored.index):
        for col in columns:
            new, old = recomputed.at[exp_id, col], stored.at[exp_id, col]
            if not _same(new, old):
                problems.append(f"aggregates: summary.csv experiment {exp_id} {col} is {old!r} "
                                f"but the raw results give {new!r}")


def _check_aggregates(root: Path, problems: list[str]) -> None:
    """summary.csv equals the aggregates recomputed from the raw results."""
    from harness.analysis.stats import summarize
    from harness.analysis.table import collect

    path = root / "summary.csv"
    if not path.exists():
        problems.append("missing file: summary.csv (the report's aggregates)")
        return
    try:
        recomputed = summarize(collect(root))
    except (ValueError, KeyError) as e:
        problems.append(f"aggregates: cannot recompute from the raw results: {e}")
        return
    stored = pd.read_csv(path)
    if "experiment_id" not in stored.columns:
        problems.append("aggregates: summary.csv has no experiment_id column")
        return
    stored["experiment_id"] = stored["experiment_id"].astype(str)
    _compare_summaries(stored.set_index("experiment_id"),
                       recomputed.set_index("experiment_id"), problems)


def _check_image_archives(root: Path, prov: dict[str, Any], manifest: Manifest | None,
                          limits: Limits, problems: list[str]) -> list[str]:
    """Each carried image archive holds the image its entry names, and the runs used it."""
    used = {r.image.id for r in manifest.runs if r.image and r.image.id} if manifest else set()
    checks = []
    for image in prov.get("images") or []:
        for archive in image.get("archives") or []:
            rel, recorded = archive.get("file"), archive.get("id")
            path = carried_file(root, rel, IMAGES)
            if path is None or not path.is_file():
                problems.append(f"missing file: {rel} (image {recorded}; image archives are "
                                f"files under {IMAGES}/)")
                continue
            found = check_archive(path, limits)
            problems += [f"image archive {rel}: {p}" for p in found.problems]
            if found.image_id != recorded:
                problems.append(f"image archive {rel}: holds image {found.image_id}, "
                                f"provenance.json says {recorded}")
            elif recorded not in used:
                problems.append(f"image archive {rel}: image {recorded} is not one the runs "
                                "used (manifest.json)")
            else:
                checks.append(f"image {image.get('tag')}: {rel} holds {recorded} (its config "
                              f"and {found.layers} layers hashed), the id the runs recorded")
    return checks


def _check_prompts(root: Path, prov: dict[str, Any], problems: list[str]) -> list[str]:
    """Each carried prompt file has the SHA-256 recorded for it."""
    checks = []
    for entry in prov.get("workload") or []:
        rel = entry.get("file")
        if not rel:
            continue
        path = carried_file(root, rel, WORKLOAD)
        if path is None or not path.is_file():
            problems.append(f"missing file: {rel} (prompt file {entry.get('ref')}; prompt "
                            f"files are files under {WORKLOAD}/)")
        elif sha256_file(path) != entry.get("sha256"):
            problems.append(f"changed file: {rel}: not the prompt file {entry.get('ref')} the "
                            "runs read (its SHA-256 differs from provenance.json's)")
        else:
            checks.append(f"prompt file {entry.get('ref')}: {rel} has its recorded SHA-256")
    return checks


def check_carried(root: Path, manifest: Manifest | None, limits: Limits,
                  problems: list[str]) -> list[str]:
    """The images and prompt files the bundle carries are the ones its runs used."""
    prov_rel = f"{PROVENANCE}/provenance.json"
    if not (root / prov_rel).exists():
        return []
    text = _read(root, prov_rel, limits, problems)
    try:
        prov = json.loads(text) if text is not None else {}
    except json.JSONDecodeError as e:
        problems.append(f"schema violation: {prov_rel}: not valid JSON ({e})")
        return []
    if not isinstance(prov, dict):
        return []
    return (_check_image_archives(root, prov, manifest, limits, problems)
            + _check_prompts(root, prov, problems))


def verify_root(root: Path, limits: Limits = DEFAULT_LIMITS) -> Verified:
    """Verify an extracted bundle; raise BundleInvalid listing every problem found."""
    problems: list[str] = []
    n_files = _check_sums(root, limits, problems)
    checks = [f"checksums of {n_files} files against {SUMS}"]
    manifest = _validate_json(root, "manifest.json", Manifest, MANIFEST_SCHEMA_VERSION, limits,
                              problems)
    plan = load_plan(root, limits, problems)
    counts = _RunCounts()
    if manifest is not None and plan is not None:
        counts = _check_planned(root, manifest, plan, problems)
        _check_unplanned(root, manifest, plan, problems)
        checks.append(f"{len(plan.runs)} planned runs accounted for ({counts.done} done, "
                      f"{counts.failed} failed, {counts.pending} not run)")
    _check_results(root, limits, problems)
    checks.append("manifest.json, plan.json and every result.json validate against their schema")
    checks += check_carried(root, manifest, limits, problems)
    if any(p.startswith(UNREADABLE) for p in problems):
        problems.append("aggregates: not recomputed, because some files violate their schema "
                        "or their size limit")
    elif manifest is not None and plan is not None:
        _check_aggregates(root, problems)
        checks.append("summary.csv matches the aggregates recomputed from the raw results")
    problems = list(dict.fromkeys(problems))  # a file too large is found by two checks
    if problems:
        raise BundleInvalid(f"bundle {root.name} failed verification "
                            f"({len(problems)} problems)", problems=problems)
    return Verified(root.name, n_files, counts.done, counts.failed, counts.pending, checks)


def verify(bundle: Path, limits: Limits = DEFAULT_LIMITS) -> Verified:
    """Extract a bundle to a temporary folder and verify it (see ``verify_root``)."""
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp:
        return verify_root(extract(Path(bundle), Path(tmp), limits), limits)
