"""The sweep's grid: every combination's experiment, each distinct sub-model value validated once.

A combination's experiment is the base experiment with each axis's value written at its dotted
path (an axis scoped to a backend only where that backend runs), validated, then resolved.
``Grid.data`` builds that dict the plain way (its validation gives the problems' messages);
``Grid.build`` builds the same resolved experiment faster:

- A field holding a sub-model (``workload``, an options block) validates a dict exactly as the
  sub-model alone validates it, and keeps an instance of the sub-model as it is. So each distinct
  value of such a field (the base's, or the base's with the axes under it written in) is
  validated once and the instance is shared by every combination with that value.
- The experiment is validated in full for every combination, in its resolved form: only its
  backend's options block, defaults filled in (what ``Experiment.resolved`` makes, the form that
  is planned and that the agent validates again from config.json). Other backends' blocks are
  validated on their own and dropped, as ``resolved`` drops them. Every model validator sees
  every field: the checks between backend, device, precision and options run per combination.

``build`` returns None where any part is invalid; the caller then validates ``data`` for the
messages. Fields with validators of their own, and an experiment model with validators that see
the raw input, are never pre-validated (full validation does all of it). ``dumped`` gives the
JSON-mode dump, and the ``id_text`` of the shared sub-models, without serialising each
experiment again.
"""

from __future__ import annotations

import copy
import itertools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from harness.backends import registry
from harness.config.experiment import Experiment, id_text
from harness.config.paths import copied, scope_of, set_path

_INVALID = object()
_MISSING = object()
#: field value types whose JSON-mode dump is the value itself
_PLAIN = (str, int, float, bool, type(None))

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


class _Shared(NamedTuple):
    """A validated sub-model shared by many experiments, dumped and encoded once."""

    value: BaseModel
    dumped: dict[str, Any]
    #: its ``id_text``
    text: str


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


def plain_serialization(schema: Any) -> bool:
    """Whether no part of a pydantic core schema changes how values are dumped."""
    if isinstance(schema, dict):
        if schema.get("computed_fields") or any(k.startswith("serialization") for k in schema):
            return False
        return all(plain_serialization(v) for v in schema.values())
    if isinstance(schema, list | tuple):
        return all(plain_serialization(v) for v in schema)
    return True


class Grid:
    """The Cartesian product of the sweep's axes over the base experiment."""

    def __init__(self, base: dict[str, Any], sweep: dict[str, list[Any]]) -> None:
        self.base = base
        self.axes = tuple(Axis.of(path, values) for path, values in sweep.items())
        self._backend_axis = next(
            (i for i, axis in enumerate(self.axes) if axis.path == "backend"), None
        )
        self._blocks = independent_blocks(Experiment)
        self._options = [name for name in registry.names() if name in self._blocks]
        self._plain = plain_serialization(Experiment.__pydantic_core_schema__)
        self._fields = list(Experiment.model_fields)
        #: id -> the shared sub-model; the entry keeps the object, so its id stays its own
        self._shared: dict[int, _Shared] = {}
        for name in self._blocks:
            default = Experiment.model_fields[name].default
            if isinstance(default, BaseModel):
                self._remember(default)
        self._memo: dict[tuple[str, Point, Point], Any] = {}
        self._groups: dict[str, list[tuple[str, Point, list[Any] | None]]] = {}
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
        return self.base.get("backend", registry.default_name())

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
                set_path(data, axis.path, copied(axis.values[i]))
        return data

    def build(self, point: Point) -> Experiment | None:
        """The combination's resolved experiment, validated; None where a part is invalid."""
        backend = self.backend(point)
        if not isinstance(backend, str):
            return None
        data = dict(self._fast_base)
        for field, axis_ids, values in self._group(backend):
            if values is not None:  # one axis that is the whole field: its value as given
                data[field] = values[point[axis_ids[0]]]
                continue
            value = self._part(field, axis_ids, tuple([point[a] for a in axis_ids]))
            if value is _INVALID:
                return None
            data[field] = value
        if self._invalid_base and any(data[key] is _INVALID for key in self._invalid_base):
            return None
        if not self._resolve(data, backend):
            return None
        try:
            exp = Experiment.model_validate(data)
        except ValidationError:
            return None
        return exp.resolved()  # itself, unless the model resolves more than the blocks here

    def dumped(self, exp: Experiment) -> tuple[dict[str, Any], dict[str, str]]:
        """``exp``'s JSON-mode dump, and the ``id_text`` of its shared sub-models by field."""
        if self._plain:
            values = exp.__dict__
            dumped: dict[str, Any] = {}
            known: dict[str, str] = {}
            for name in self._fields:
                value = values[name]
                if type(value) in _PLAIN:
                    dumped[name] = value
                    continue
                shared = self._shared.get(id(value))
                if shared is None:
                    break
                dumped[name] = shared.dumped
                known[name] = shared.text
            else:
                return dumped, known
        return exp.model_dump(mode="json", exclude_none=False), {}

    def _resolve(self, data: dict[str, Any], backend: str) -> bool:
        """Keep only ``backend``'s options block, its defaults where none is given."""
        for name in self._options:
            value = data.get(name)
            if not (value is None or isinstance(value, BaseModel)):
                return False  # not validated here: let full validation of ``data`` say why
            if name != backend:
                data.pop(name, None)
            elif value is None:
                data[name] = self._part(name, (), ())
        return True

    def _group(self, backend: str) -> list[tuple[str, Point, list[Any] | None]]:
        """The fields that the axes applying to ``backend`` write, with those axes.

        The third item is the axis's values where one axis sets a whole plain field.
        """
        group = self._groups.get(backend)
        if group is None:
            fields: dict[str, list[int]] = {}
            for i, axis in enumerate(self.axes):
                if axis.scope is None or axis.scope == backend:
                    fields.setdefault(axis.field, []).append(i)
            group = self._groups[backend] = [
                (field, tuple(ids), self._whole(field, ids)) for field, ids in fields.items()
            ]
        return group

    def _whole(self, field: str, axis_ids: list[int]) -> list[Any] | None:
        """The values of the one axis that sets all of a field that is not a block, or None."""
        if len(axis_ids) == 1 and field not in self._blocks:
            axis = self.axes[axis_ids[0]]
            if axis.path == field:
                return axis.values
        return None

    def _part(self, field: str, axis_ids: Point, index: Point) -> Any:
        """One field's value with these axes' values written in (validated once, if a block).

        With no axes it is the block's defaults (the base's value is in ``_fast_base``).
        """
        key = (field, axis_ids, index)
        value = self._memo.get(key, _MISSING)
        if value is _MISSING:
            holder: dict[str, Any] = {field: {}}
            if axis_ids:
                holder = {field: copy.deepcopy(self.base[field])} if field in self.base else {}
            for a, i in zip(axis_ids, index, strict=True):
                set_path(holder, self.axes[a].path, copied(self.axes[a].values[i]))
            value = self._memo[key] = self._validated(field, holder[field])
        return value

    def _validated(self, field: str, raw: Any) -> Any:
        """A block's dict as its validated, shared instance; anything else as given."""
        model = self._blocks.get(field)
        if model is None or not isinstance(raw, dict):
            return raw
        try:
            return self._remember(model.model_validate(raw))
        except ValidationError:
            return _INVALID

    def _remember(self, value: BaseModel) -> BaseModel:
        """Dump and encode a shared sub-model once."""
        dumped = value.model_dump(mode="json", exclude_none=False)
        self._shared[id(value)] = _Shared(value, dumped, id_text(value, dumped))
        return value
