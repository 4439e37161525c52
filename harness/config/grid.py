"""The sweep's grid: every combination's experiment, each distinct sub-model value validated once.

A combination's experiment is the base experiment with each axis's value written at its dotted
path (an axis scoped to a backend only where that backend runs). ``Grid.data`` builds that dict
the plain way; ``Grid.build`` builds the same experiment faster and is exact by construction:

- A field that holds a sub-model (``workload``, an options block, ...) validates a dict exactly
  as the sub-model alone validates it, and keeps an instance of that sub-model as it is. So each
  distinct value of such a field (the base's, or the base's with the axes under it written in)
  is validated once, and the instance is handed to every combination that has that value.
- The experiment itself is still validated in full for every combination, from the same keys:
  its own fields, its model validators (which see every field: the checks between backend,
  device, precision and options) and unknown keys.

Where a part fails, ``build`` returns None and the caller validates ``data`` for the messages.
Fields with validators of their own, or an experiment model with validators that read the raw
input, are left to full validation (they are never pre-validated).
"""

from __future__ import annotations

import copy
import itertools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.config.experiment import Experiment
from harness.config.paths import scope_of, set_path

_INVALID = object()
_MISSING = object()

Point = tuple[int, ...]
"""A combination: the index of its value on each axis."""


@dataclass(frozen=True)
class Axis:
    """One sweep axis: its dotted path, its values, the field it writes, its backend scope."""

    path: str
    values: list[Any]
    field: str
    scope: str | None

    @classmethod
    def of(cls, path: str, values: list[Any]) -> Axis:
        """The axis at ``path`` with these values."""
        return cls(path, values, path.split(".", 1)[0], scope_of(path))


def sole_model(annotation: Any) -> type[BaseModel] | None:
    """The model an annotation is (``X`` or ``X | None``), or None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    others = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(others) == 1 and isinstance(others[0], type) and issubclass(others[0], BaseModel):
        return others[0]
    return None


def independent_blocks(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Fields of ``model`` whose sub-model validates a dict on its own, as the field does."""
    decorators = model.__pydantic_decorators__
    if any(d.info.mode != "after" for d in decorators.model_validators.values()):
        return {}  # a validator that sees the raw input would see instances instead of dicts
    checked = {name for d in decorators.field_validators.values() for name in d.info.fields}
    if "*" in checked:
        return {}
    blocks = {}
    for name, info in model.model_fields.items():
        sub = sole_model(info.annotation)
        if sub is not None and name not in checked and not info.metadata and not info.discriminator:
            blocks[name] = sub
    return blocks


class Grid:
    """The Cartesian product of the sweep's axes over the base experiment."""

    def __init__(self, base: dict[str, Any], sweep: dict[str, list[Any]]) -> None:
        self.base = base
        self.axes = tuple(Axis.of(path, values) for path, values in sweep.items())
        self._backend_axis = next(
            (i for i, axis in enumerate(self.axes) if axis.path == "backend"), None
        )
        self._blocks = independent_blocks(Experiment)
        self._memo: dict[tuple[str, Point, Point], Any] = {}
        self._groups: dict[str, list[tuple[str, Point]]] = {}
        self._fast_base = {key: self._validated(key, value) for key, value in base.items()}
        self._invalid_base = [k for k, v in self._fast_base.items() if v is _INVALID]

    def __len__(self) -> int:
        return math.prod(len(axis.values) for axis in self.axes)

    def points(self) -> Iterator[Point]:
        """Every combination, in the order of the axes' values (the last axis fastest)."""
        return itertools.product(*(range(len(axis.values)) for axis in self.axes))

    def backend(self, point: Point) -> Any:
        """The backend a combination runs (its backend axis, else the base's)."""
        if self._backend_axis is not None:
            return self.axes[self._backend_axis].values[point[self._backend_axis]]
        return self.base.get("backend", "pytorch")

    def where(self, point: Point) -> str:
        """The combination, as problems name it: ``sweep a=1, b='x'`` (or ``experiment``)."""
        if not self.axes:
            return "experiment"
        return "sweep " + ", ".join(
            f"{axis.path}={axis.values[i]!r}" for axis, i in zip(self.axes, point, strict=True)
        )

    def data(self, point: Point) -> dict[str, Any]:
        """The combination's experiment as a plain dict: a copy of the base, axes written in."""
        data = copy.deepcopy(self.base)
        backend = self.backend(point)
        for axis, i in zip(self.axes, point, strict=True):
            if axis.scope is None or axis.scope == backend:
                set_path(data, axis.path, axis.values[i])
        return data

    def build(self, point: Point) -> Experiment | None:
        """The combination's experiment, validated; None where it is invalid (see ``data``)."""
        backend = self.backend(point)
        if not isinstance(backend, str):
            return None
        data = dict(self._fast_base)
        for field, axis_ids in self._group(backend):
            value = self._part(field, axis_ids, tuple(point[a] for a in axis_ids))
            if value is _INVALID:
                return None
            data[field] = value
        if any(data[key] is _INVALID for key in self._invalid_base):
            return None
        try:
            return Experiment.model_validate(data)
        except ValidationError:
            return None

    def _group(self, backend: str) -> list[tuple[str, Point]]:
        """The fields that the axes applying to ``backend`` write, with those axes."""
        group = self._groups.get(backend)
        if group is None:
            fields: dict[str, list[int]] = {}
            for i, axis in enumerate(self.axes):
                if axis.scope is None or axis.scope == backend:
                    fields.setdefault(axis.field, []).append(i)
            group = self._groups[backend] = [(f, tuple(ids)) for f, ids in fields.items()]
        return group

    def _part(self, field: str, axis_ids: Point, index: Point) -> Any:
        """The value of one field with these axes' values written in, validated once."""
        if len(axis_ids) == 1 and field not in self._blocks:
            axis = self.axes[axis_ids[0]]
            if axis.path == field:
                return axis.values[index[0]]
        key = (field, axis_ids, index)
        value = self._memo.get(key, _MISSING)
        if value is _MISSING:
            holder = {field: copy.deepcopy(self.base[field])} if field in self.base else {}
            for a, i in zip(axis_ids, index, strict=True):
                set_path(holder, self.axes[a].path, self.axes[a].values[i])
            value = self._memo[key] = self._validated(field, holder[field])
        return value

    def _validated(self, field: str, raw: Any) -> Any:
        """A sub-model field's dict as its validated instance; anything else as given."""
        model = self._blocks.get(field)
        if model is None or not isinstance(raw, dict):
            return raw
        try:
            return model.model_validate(raw)
        except ValidationError:
            return _INVALID
