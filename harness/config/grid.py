"""The sweep's grid: every combination's experiment, each distinct sub-model value validated once.

A combination's experiment is the base experiment with each axis's value written at its dotted
path (an axis scoped to a backend only where that backend runs), validated, then resolved.
``Grid.data`` builds that dict the plain way (its validation gives the problems' messages);
``Grid.build`` builds the same resolved experiment, its JSON-mode dump and its id text faster:

- A field holding a sub-model (``workload``, an options block) validates a dict exactly as the
  sub-model alone validates it, and keeps an instance of the sub-model as it is. So each distinct
  value of such a field (the base's, or the base's with the axes under it written in) is
  validated once and the instance is shared by every combination with that value.
- The experiment is validated in full for every combination, in its resolved form: only its
  backend's options block, defaults filled in (what ``Experiment.resolved`` makes, the form that
  is planned and that the agent validates again from config.json). Other backends' blocks are
  validated on their own and dropped, as ``resolved`` drops them. Every model validator sees
  every field: the checks between backend, device, precision and options run per combination.
- A field's dump and its member of the id text depend on its value alone. They are made once
  per distinct value: for the fields no axis writes, once per backend; for the others, once per
  value of the axes that write them. Each combination's validated values are checked to be the
  very objects those were made from (validation hands back what it was given: the shared
  instances, the same strings and numbers); where one is not, that experiment is dumped and
  encoded in full, so the result never depends on this shortcut.

``build`` returns None where any part is invalid; the caller then validates ``data`` for the
messages. Fields with validators of their own, and an experiment model with validators that see
the raw input, are never pre-validated (full validation does all of it); a model whose dump is
not plain (custom serialisers) is dumped in full.
"""

from __future__ import annotations

import copy
import itertools
import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from harness.backends import registry
from harness.config.canonical import object_text
from harness.config.experiment import Experiment, field_text, id_text
from harness.config.model_facts import independent_blocks, plain_serialization
from harness.config.paths import copied, get_parts, scope_of, set_path

_INVALID = object()

Point = tuple[int, ...]
"""A combination: the index of its value on each axis."""

#: a group's memo key: its field, its axes and their values' indexes
_Key = tuple[str, Point, Point]


@dataclass(frozen=True)
class Axis:
    """One sweep axis: its dotted path, its values, the field it writes, its backend scope."""

    path: str
    values: list[Any]
    field: str
    scope: str | None
    #: the path's parts
    parts: tuple[str, ...]

    @classmethod
    def of(cls, path: str, values: list[Any]) -> Axis:
        """The axis at ``path`` with these values."""
        return cls(path, values, path.split(".", 1)[0], scope_of(path), tuple(path.split(".")))


class Built(NamedTuple):
    """A combination's resolved experiment, its JSON-mode dump, its id text and swept values.

    ``dumped`` is None where the grid makes no dumps. ``params`` maps each axis to the value
    the experiment has at its path (as its dump has it; None where the backend has no such
    field); None where it was not made here.
    """

    experiment: Experiment
    dumped: dict[str, Any] | None
    text: str
    params: dict[str, Any] | None = None


class _Made(NamedTuple):
    """A field's validated value, with its JSON-mode dump and its member of the id text."""

    name: str
    value: Any
    dumped: Any
    text: str
    #: where axes write the field: the values at their paths
    params: dict[str, Any] = {}  # the one default, never changed
    #: whether a value in ``params`` is a container (copied for each experiment)
    containers: bool = False


@dataclass(eq=False)
class _Choice:
    """A field that axes write, at one combination of their values (made once)."""

    key: _Key
    #: what the experiment's dict gets: the value as given, or the validated block (_INVALID)
    value: Any
    #: what it gives, from the first experiment built with it
    written: _Made | None = None


class _Group(NamedTuple):
    """A field that axes write, for one backend."""

    field: str
    axes: Point
    #: the axis's values, where one axis sets a whole plain field (written in as given)
    whole: list[Any] | None
    #: the choice at each value, where one axis writes the field
    choices: list[_Choice] | None


@dataclass
class _Layout:
    """One backend's experiments: the fields no axis writes, their dump and id text members."""

    #: the fields no axis writes, and their values
    fixed: list[str]
    fixed_values: list[Any]
    #: every field's dump, the written fields' from the first experiment (each is replaced)
    dumped: dict[str, Any]
    #: the id text's members in sorted field order (the written fields' are replaced)
    members: list[str]
    #: a written field's place in ``members``
    place: dict[str, int]
    #: each axis's value, the written fields' from the first experiment (each is replaced)
    params: dict[str, Any]


@dataclass
class _Shape:
    """What every experiment of one backend starts from."""

    #: the base's fields, resolved for the backend (None: one of them is invalid)
    template: dict[str, Any] | None
    #: the fields the axes write
    groups: list[_Group]
    #: whether the backend's own block must be checked (an axis writes it)
    own_block: bool
    #: made from the backend's first experiment
    layout: _Layout | None = None


class Grid:
    """The Cartesian product of the sweep's axes over the base experiment.

    ``dumps``: whether ``build`` makes each experiment's JSON-mode dump (exclude rules read it).
    """

    def __init__(self, base: dict[str, Any], sweep: dict[str, list[Any]], *,
                 dumps: bool = True) -> None:
        self.base = base
        self.axes = tuple(Axis.of(path, values) for path, values in sweep.items())
        self._backend_axis = next(
            (i for i, axis in enumerate(self.axes) if axis.path == "backend"), None
        )
        self._base_backend = base.get("backend", registry.default_name())
        self._dumps = dumps
        self._blocks = independent_blocks(Experiment)
        self._options = [name for name in registry.names() if name in self._blocks]
        #: every backend's block is resolved here, so validation gives the resolved experiment
        self._resolves_all = len(self._options) == len(registry.names())
        self._plain = plain_serialization(Experiment.__pydantic_core_schema__)
        self._sorted = sorted(Experiment.model_fields)
        #: each field that axes write, at each combination of their values met so far
        self._choices: dict[_Key, _Choice] = {}
        self._shapes: dict[str, _Shape] = {}
        self._fast_base = {key: self._validated(key, value) for key, value in base.items()}

    def __len__(self) -> int:
        return math.prod(len(axis.values) for axis in self.axes)

    def points(self) -> Iterator[Point]:
        """Every combination, in the order of the axes' values (the last axis fastest)."""
        return itertools.product(*(range(len(axis.values)) for axis in self.axes))

    def backend(self, point: Point) -> Any:
        """The backend a combination runs (its backend axis, else the base's)."""
        if self._backend_axis is not None:
            return self.axes[self._backend_axis].values[point[self._backend_axis]]
        return self._base_backend

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

    def build(self, point: Point) -> Built | None:
        """The combination's resolved experiment, validated; None where a part is invalid."""
        backend = self.backend(point)
        if not isinstance(backend, str):
            return None
        shape = self._shapes.get(backend) or self._shape(backend)
        if shape.template is None:
            return None
        data = shape.template.copy()
        choices: list[_Choice] = []
        for group in shape.groups:
            if group.choices is not None:
                choice = group.choices[point[group.axes[0]]]
            else:
                choice = self._choice(group, tuple([point[a] for a in group.axes]))
            if choice.value is _INVALID:
                return None
            data[group.field] = choice.value
            choices.append(choice)
        if shape.own_block and not isinstance(data.get(backend), BaseModel):
            return None  # its block written as something else: full validation says what
        try:  # the validator itself, as model_validate calls it (its wrapper adds up over a grid)
            exp = Experiment.__pydantic_validator__.validate_python(data)
        except ValidationError:
            return None
        if not self._resolves_all:
            exp = exp.resolved()
        if not self._plain:
            return _in_full(exp)
        return self._described(exp, shape, choices)

    def _described(self, exp: Experiment, shape: _Shape, choices: list[_Choice]) -> Built:
        """``exp`` with its dump and id text, from the fields' memos where its values match."""
        layout = shape.layout
        if layout is None:
            layout = shape.layout = self._layout(exp, choices)
        values = exp.__dict__
        if not all(map(operator.is_, map(values.__getitem__, layout.fixed), layout.fixed_values)):
            return _in_full(exp)
        members = layout.members.copy()
        params = layout.params.copy()
        dumped = layout.dumped.copy() if self._dumps else None
        containers = False
        for choice in choices:
            written = choice.written
            if written is None:
                written = choice.written = self._written(exp, choice.key)
            elif values[written.name] is not written.value:
                return _in_full(exp)
            members[layout.place[written.name]] = written.text
            params.update(written.params)
            if dumped is not None:
                dumped[written.name] = written.dumped
            containers = containers or written.containers
        if containers:  # the dumps' parts are shared: each experiment gets its own copies
            params = {axis: copied(value) for axis, value in params.items()}
        return Built(exp, dumped, object_text(members), params)

    def _written(self, exp: Experiment, key: _Key) -> _Made:
        """What a written field of ``exp`` gives, with the values at its axes' paths."""
        made = _made(exp, key[0])
        params = {self.axes[a].path: get_parts({key[0]: made.dumped}, self.axes[a].parts)
                  for a in key[1]}
        return made._replace(params=params, containers=any(
            isinstance(v, dict | list) for v in params.values()))

    def _layout(self, exp: Experiment, choices: list[_Choice]) -> _Layout:
        """The layout of ``exp``'s backend, from ``exp``: its fixed fields and its places."""
        written = {choice.key[0] for choice in choices}
        made = {name: _made(exp, name) for name in self._sorted}
        dumped = {name: made[name].dumped for name in Experiment.model_fields}
        fixed = [name for name in made if name not in written]
        return _Layout(
            fixed=fixed,
            fixed_values=[made[name].value for name in fixed],
            dumped=dumped,
            members=[made[name].text for name in self._sorted],
            place={name: i for i, name in enumerate(self._sorted) if name in written},
            params={axis.path: get_parts(dumped, axis.parts) for axis in self.axes},
        )

    def _shape(self, backend: str) -> _Shape:
        """What ``backend``'s experiments start from, made once."""
        groups = self._groups(backend)
        written = {group.field for group in groups}
        shape = self._shapes[backend] = _Shape(
            self._resolved_base(backend, written), groups,
            own_block=backend in self._options and backend in written,
        )
        return shape

    def _resolved_base(self, backend: str, written: set[str]) -> dict[str, Any] | None:
        """The base's fields for ``backend``'s experiments; None if one is invalid.

        Other backends' blocks are dropped (after validating them on their own); the backend's
        own block is its defaults where none is given and no axis writes it.
        """
        data = dict(self._fast_base)
        for name in self._options:
            value = data.get(name)
            if name != backend:
                data.pop(name, None)
                if not (value is None or isinstance(value, BaseModel)):
                    return None  # not validated here: let full validation say why
            elif value is None and name not in written:
                data[name] = self._block(name, (), ())
        if any(value is _INVALID for key, value in data.items() if key not in written):
            return None
        if backend in self._options and backend not in written and not isinstance(
                data.get(backend), BaseModel):
            return None  # the base's block is something else: full validation says what
        return data

    def _groups(self, backend: str) -> list[_Group]:
        """The fields that the axes applying to ``backend`` write, with those axes."""
        fields: dict[str, list[int]] = {}
        for i, axis in enumerate(self.axes):
            if axis.scope is None or axis.scope == backend:
                fields.setdefault(axis.field, []).append(i)
        groups = []
        for field, ids in fields.items():
            group = _Group(field, tuple(ids), self._whole(field, ids), None)
            if len(ids) == 1:
                group = group._replace(choices=[
                    self._choice(group, (i,)) for i in range(len(self.axes[ids[0]].values))
                ])
            groups.append(group)
        return groups

    def _choice(self, group: _Group, index: Point) -> _Choice:
        """The group's field at these values of its axes."""
        key = (group.field, group.axes, index)
        choice = self._choices.get(key)
        if choice is None:
            value = group.whole[index[0]] if group.whole is not None else self._block(*key)
            choice = self._choices[key] = _Choice(key, value)
        return choice

    def _whole(self, field: str, axis_ids: list[int]) -> list[Any] | None:
        """The values of the one axis that sets all of a field that is not a block, or None."""
        if len(axis_ids) == 1 and field not in self._blocks:
            axis = self.axes[axis_ids[0]]
            if axis.path == field:
                return axis.values
        return None

    def _block(self, field: str, axis_ids: Point, index: Point) -> Any:
        """A field's value with these axes' values written in (validated, if a block).

        With no axes it is the block's defaults (the base's value is in ``_fast_base``). A
        backend's own block written as null is its defaults, as ``resolved`` makes it.
        """
        holder: dict[str, Any] = {field: {}}
        if axis_ids:
            holder = {field: copy.deepcopy(self.base[field])} if field in self.base else {}
        for a, i in zip(axis_ids, index, strict=True):
            set_path(holder, self.axes[a].path, copied(self.axes[a].values[i]))
        raw = holder[field]
        if raw is None and field in self._options:
            raw = {}
        return self._validated(field, raw)

    def _validated(self, field: str, raw: Any) -> Any:
        """A block's dict as its validated, shared instance; anything else as given."""
        model = self._blocks.get(field)
        if model is None or not isinstance(raw, dict):
            return raw
        try:
            return model.model_validate(raw)
        except ValidationError:
            return _INVALID


def _made(exp: Experiment, name: str) -> _Made:
    """A field of ``exp``: its value, its dump (as the experiment's has it), its id text member."""
    dumped = exp.model_dump(mode="json", exclude_none=False, include={name})[name]
    value = exp.__dict__[name]
    return _Made(name, value, dumped, field_text(type(exp), name, value, dumped))


def _in_full(exp: Experiment) -> Built:
    """``exp`` dumped and encoded in full."""
    dumped = exp.model_dump(mode="json", exclude_none=False)
    return Built(exp, dumped, id_text(exp, dumped))
