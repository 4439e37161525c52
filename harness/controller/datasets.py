"""The files a study names, resolved once on the host: checked, hashed, then handed to each run.

A study's files are resolved when it starts (relative paths from the study file's folder),
checked for what every experiment needs, hashed, and recorded in the manifest; a resumed
study reads them where the manifest says. Each run then gets the recorded entry and its
runtime says where the agent reads it (a read-only mount in containers, the host path for the
local runner); the agent checks the hash again before it uses the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.config.datasets import (
    FIELDS,
    DatasetField,
    DatasetFile,
    content_problem,
    dataset_file,
    named_files,
    resolve,
    value_at,
)
from harness.config.experiment import Experiment
from harness.errors import RunFailure, UserInputError
from harness.results.reasons import FailureReason

Key = tuple[str, str]


@dataclass
class Resolved:
    """The files found, what makes the study unable to run, and what to know about them."""

    files: list[DatasetFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


#: the experiment fields that hold the fields FIELDS read (what a file and its need depend on)
_HOLDERS = tuple(dict.fromkeys(p.split(".", 1)[0] for f in FIELDS for p in (f.path, f.needed)))


def _needs(experiments: Iterable[Experiment]) -> dict[Key, tuple[DatasetField, int, int]]:
    """Per named file: its field, the most records an experiment needs, how many name it."""
    needs: dict[Key, tuple[DatasetField, int, int]] = {}
    #: what each distinct set of holders names (a plan's experiments share their sub-models;
    #: the experiments stay alive, so the ids stay theirs)
    seen: dict[tuple[int, ...], list[tuple[DatasetField, str, object]]] = {}
    for exp in experiments:
        holders = tuple([id(getattr(exp, name)) for name in _HOLDERS])
        named = seen.get(holders)
        if named is None:
            named = seen[holders] = [(spec, value, value_at(exp, spec.needed))
                                     for spec, value in named_files(exp)]
        for spec, value, needed in named:
            key = (spec.path, value)
            _, most, count = needs.get(key, (spec, 0, 0))
            needs[key] = (spec, max(most, needed if isinstance(needed, int) else 0), count + 1)
    return needs


def resolve_files(
    experiments: Iterable[Experiment],
    base: Path,
    origin: str,
    known: Sequence[DatasetFile] = (),
) -> Resolved:
    """Every file the experiments name, read once, checked and hashed.

    Relative paths are read from ``base`` (the study file's folder) unless ``known`` (the
    manifest of a study being resumed) records where the file was. ``origin`` names the
    study file in messages.
    """
    recorded = {(f.field, f.source): f for f in known}
    found = Resolved()
    for (path, value), (spec, needed, count) in _needs(experiments).items():
        old = recorded.get((path, value))
        used = f"{origin}: {path} {value!r} (in {count} experiment{'s' * (count != 1)})"
        where = Path(old.path) if old else resolve(value, base)
        try:
            entry, data = dataset_file(spec, value, base, where)
        except UserInputError as e:
            why = str(e).removeprefix(f"{where}: ")
            relative = "" if str(where) == value or old else (
                f" (looked at {where}: relative paths are read from the study file's folder)")
            found.errors.append(f"{used}: {why}; fix the path{relative}")
            continue
        problem = content_problem(spec, data, entry.path, needed)
        if problem:
            found.errors.append(f"{used}: {problem}")
            continue
        if old and old.sha256 != entry.sha256:
            found.notes.append(
                f"{entry.path} ({path}) changed since the study began (sha256 {old.sha256[:12]} -> "
                f"{entry.sha256[:12]}): runs done before read the earlier version; results "
                "record which each run read")
        found.files.append(entry)
    return found


def files_for(exp: Experiment, known: Mapping[Key, DatasetFile], base: Path) -> list[DatasetFile]:
    """The files one run reads, as recorded (RunFailure(dataset_not_found) when one is gone).

    A file the study did not record (a folder from an earlier version) is resolved from
    ``base`` and hashed now.
    """
    files = []
    for spec, value in named_files(exp):
        entry = known.get((spec.path, value))
        if entry is None:
            try:
                entry, _ = dataset_file(spec, value, base)
            except UserInputError as e:
                raise RunFailure(str(e), reason=FailureReason.DATASET_NOT_FOUND) from e
        elif not Path(entry.path).exists():
            raise RunFailure(
                f"the {spec.what} {entry.path} ({spec.path} {value!r}) is gone since the study "
                "began; put it back, then resume the study",
                reason=FailureReason.DATASET_NOT_FOUND)
        files.append(entry)
    return files
