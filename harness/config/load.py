"""Read study and experiment files safely and validate them into models."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.config.experiment import Experiment
from harness.config.paths import check_path
from harness.config.problems import describe, model_of
from harness.config.study import Study
from harness.config.sweep import Plan, expand
from harness.errors import UserInputError

MAX_FILE_BYTES = 1024 * 1024
#: more problems than this are summarised (a wrong file can have thousands)
MAX_PROBLEMS = 40
#: byte-order marks of encodings other than UTF-8, which YAML files here must use
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16",
}


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys and anchors/aliases."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", getattr(node, "start_mark", None),
                f"duplicate key {key!r}", key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class _AliasRefusingComposer(_StrictLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases are not allowed in study files", event.start_mark
            )
        event = self.peek_event()
        if getattr(event, "anchor", None):  # refused before its node is built
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases are not allowed in study files", event.start_mark
            )
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> Any:
    """Read a YAML (or JSON) file with size, encoding, duplicate-key and alias checks."""
    return _parse(_decode(_read_bytes(path), path), path)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes: a regular file no larger than a study file may be."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise UserInputError(f"{path}: no such file") from e
    except OSError as e:
        raise UserInputError(f"{path}: cannot be read ({e.strerror})") from e
    if path.is_dir():
        raise UserInputError(f"{path}: is a folder, expected a YAML file")
    if not path.is_file():
        raise UserInputError(f"{path}: is not a regular file (a device, pipe or socket)")
    if size > MAX_FILE_BYTES:
        raise UserInputError(
            f"{path}: {size} bytes is larger than a study file may be ({MAX_FILE_BYTES} bytes)"
        )
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # the file may grow after stat
    except OSError as e:
        raise UserInputError(f"{path}: cannot be read ({e.strerror})") from e
    if len(raw) > MAX_FILE_BYTES:
        raise UserInputError(f"{path}: larger than a study file may be ({MAX_FILE_BYTES} bytes)")
    return raw


def _decode(raw: bytes, path: Path) -> str:
    """The file's text: UTF-8, not another encoding, not binary."""
    for bom, encoding in _OTHER_BOMS.items():
        if raw.startswith(bom):
            raise UserInputError(f"{path}: is {encoding} text; save it as UTF-8")
    if b"\x00" in raw:
        raise UserInputError(f"{path}: looks like a binary file, expected YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(
            f"{path}: is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e


def _parse(text: str, path: Path) -> Any:
    """One YAML document of plain values: no tags, anchors, aliases or duplicate keys."""
    try:
        return yaml.load(text, Loader=_AliasRefusingComposer)  # noqa: S506 - safe subclass
    except RecursionError as e:
        raise UserInputError(f"{path}: nested too deeply to be a study file") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        if "could not determine a constructor for the tag" in problem:
            problem = (f"{problem.split('tag ', 1)[1]}: YAML tags are not allowed in study "
                       "files (write plain values)")
        elif problem == "but found another document":
            problem = "expected one YAML document, found a second ('---')"
        raise UserInputError(f"{path}:{where}: invalid YAML: {problem}") from e


def _is_number(annotation: Any) -> bool:
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_is_number(a) for a in typing.get_args(annotation) if a is not type(None))
    return False


def _annotation_at(model: Any, dotted: str) -> Any:
    """The annotation of a dotted field path under a model (None if it names no field)."""
    annotation: Any = None
    for part in dotted.split("."):
        fields = getattr(model, "model_fields", None) or {}
        if part not in fields:
            return None
        annotation = fields[part].annotation
        model = model_of(annotation)
    return annotation


def _booleans(model: Any, data: Any, prefix: str) -> list[str]:
    """Booleans given where numbers belong (pydantic would read true as 1)."""
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        annotation = _annotation_at(model, str(key))
        where = f"{prefix}{key}"
        if isinstance(value, bool) and _is_number(annotation):
            found.append(f"{where}: expected a number, got {value!r} (YAML reads true/false, "
                         "yes/no and on/off as booleans)")
        elif isinstance(value, dict) and model_of(annotation) is not None:
            found += _booleans(model_of(annotation), value, f"{where}.")
    return found


def _study_booleans(data: dict[str, Any]) -> list[str]:
    found = _booleans(Study, {k: v for k, v in data.items() if k != "experiment"}, "")
    found += _booleans(Experiment, data.get("experiment"), "experiment.")
    for i, inc in enumerate(data.get("include") or []):
        found += _booleans(Experiment, inc, f"include[{i}].")
    for i, rule in enumerate(data.get("exclude") or []):
        found += _booleans(Experiment, rule, f"exclude[{i}].")
    sweep = data.get("sweep")
    if isinstance(sweep, dict):
        for axis, values in sweep.items():
            if isinstance(values, list) and _is_number(_annotation_at(Experiment, str(axis))):
                for j, value in enumerate(values):
                    if isinstance(value, bool):
                        found.append(f"sweep.{axis}[{j}]: expected a number, got {value!r}")
    return found


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return problems[:MAX_PROBLEMS] + [f"... and {len(problems) - MAX_PROBLEMS} more problems"]


def _validate(model: type[BaseModel], data: Any, path: Path) -> Any:
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise UserInputError(f"{path}: expected a mapping at the top level, got {kind}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = [f"{path}: {line}" for line in describe(e, model=model)]
        raise UserInputError(f"{path}: the file is invalid", problems=problems) from e


def load_study(path: Path) -> Study:
    """Read and validate a study file (its experiment is checked by ``plan_study``)."""
    data = read_yaml(path)
    booleans = [f"{path}: {p}" for p in _study_booleans(data)] if isinstance(data, dict) else []
    try:
        study = _validate(Study, data, path)
    except UserInputError as e:
        e.problems.extend(p for p in _more_problems(data, path) + booleans if p not in e.problems)
        e.problems[:] = _capped(e.problems)
        raise
    if booleans:
        raise UserInputError(f"{path}: the file is invalid", problems=booleans)
    return study


def _more_problems(data: Any, path: Path) -> list[str]:
    """Problems in the base experiment and sweep keys, reported with the study's own."""
    if not isinstance(data, dict):
        return []
    found: list[str] = []
    if isinstance(data.get("experiment"), dict):
        try:
            Experiment.model_validate(data["experiment"])
        except ValidationError as e:
            found += [f"{path}: {line}" for line in describe(e, prefix="experiment", model=Experiment)]
    if isinstance(data.get("sweep"), dict):
        for key in data["sweep"]:
            why = check_path(str(key))
            if why:
                found.append(f"{path}: sweep.{key}: {why}")
    return found


def plan_study(path: Path) -> tuple[Study, Plan]:
    """Read, validate and expand a study file into its plan."""
    study = load_study(path)
    return study, expand(study, source=str(path))


#: study keys that add experiments to the base one
SEVERAL = ("sweep", "include")


def load_experiment(path: Path) -> Experiment:
    """Read and validate a single-experiment file (YAML or JSON).

    A study file is read as its base experiment (``experiment:``), unless a sweep or include
    makes it several: that is refused, never cut down to the base experiment.
    """
    data = read_yaml(path)
    if isinstance(data, dict) and "experiment" in data and "model" not in data:
        several = [key for key in SEVERAL if data.get(key)]
        if several:
            raise UserInputError(
                f"{path}: {several[0]}: this is a study of several experiments, where one "
                f"experiment is expected; run the study with `harness study run {path}` (list "
                f"its runs with `harness study plan {path}`), or put the one experiment to run "
                "in a file of its own")
        data = data["experiment"]
    try:
        exp = _validate(Experiment, data, path)
    except UserInputError as e:
        e.problems[:] = _capped(e.problems)
        raise
    foreign = [
        f"{path}: {name}: options for backend {name!r}, but this experiment runs backend "
        f"{exp.backend!r}; remove the block or set backend: {name}"
        for name in exp.foreign_blocks()
    ]
    if foreign:
        raise UserInputError(f"{path}: the file is invalid", problems=foreign)
    return exp.resolved()
