"""Read study and experiment files safely and validate them into models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.config.experiment import Experiment
from harness.config.problems import describe
from harness.config.study import Study
from harness.config.sweep import Plan, check_path, expand
from harness.errors import UserInputError

MAX_FILE_BYTES = 1024 * 1024


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
        node = super().compose_node(parent, index)
        if getattr(node, "anchor", None):
            raise yaml.composer.ComposerError(
                None, None, "YAML anchors and aliases are not allowed in study files", node.start_mark
            )
        return node


def read_yaml(path: Path) -> Any:
    """Read a YAML (or JSON) file with size, encoding, duplicate-key and alias checks."""
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise UserInputError(f"{path}: no such file") from e
    except OSError as e:
        raise UserInputError(f"{path}: cannot be read ({e.strerror})") from e
    if path.is_dir():
        raise UserInputError(f"{path}: is a folder, expected a YAML file")
    if size > MAX_FILE_BYTES:
        raise UserInputError(
            f"{path}: {size} bytes is larger than a study file may be ({MAX_FILE_BYTES} bytes)"
        )
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise UserInputError(f"{path}: looks like a binary file, expected YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(
            f"{path}: is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e
    try:
        return yaml.load(text, Loader=_AliasRefusingComposer)  # noqa: S506 - safe subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise UserInputError(f"{path}:{where}: invalid YAML: {problem}") from e


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
    try:
        return _validate(Study, data, path)
    except UserInputError as e:
        e.problems.extend(p for p in _more_problems(data, path) if p not in e.problems)
        raise


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


def load_experiment(path: Path) -> Experiment:
    """Read and validate a single-experiment file (YAML or JSON)."""
    data = read_yaml(path)
    if isinstance(data, dict) and "experiment" in data and "model" not in data:
        data = data["experiment"]
    exp = _validate(Experiment, data, path)
    foreign = [
        f"{path}: {name}: options for backend {name!r}, but this experiment runs backend "
        f"{exp.backend!r}; remove the block or set backend: {name}"
        for name in exp.foreign_blocks()
    ]
    if foreign:
        raise UserInputError(f"{path}: the file is invalid", problems=foreign)
    return exp.resolved()
