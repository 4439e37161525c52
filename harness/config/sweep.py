"""Expand a study into a plan of runs. Pure: no I/O, no clocks, no randomness but the seed."""

from __future__ import annotations

import copy
import itertools
import math
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.backends import registry
from harness.config.experiment import Experiment
from harness.config.problems import describe, model_of, suggest
from harness.config.study import Execution, Study
from harness.errors import UserInputError

RAW_COMBINATION_LIMIT = 1_000_000


class PlannedExperiment(BaseModel):
    """One distinct experiment of a study and the swept values that produced it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    params: dict[str, Any]
    experiment: Experiment


class PlannedRun(BaseModel):
    """One run: an experiment in one cycle, at one position of the plan."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str
    experiment_id: str
    cycle: int
    position: int


class Plan(BaseModel):
    """The expanded study: distinct experiments and the ordered runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study: str
    axes: list[str]
    experiments: list[PlannedExperiment]
    runs: list[PlannedRun]
    execution: Execution
    warnings: list[str] = []

    def experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id."""
        for planned in self.experiments:
            if planned.id == experiment_id:
                return planned.experiment
        raise KeyError(experiment_id)


def get_path(data: Any, path: str) -> Any:
    """Read a dotted path from nested dicts; None where a level is missing or null."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Write a dotted path into nested dicts, creating levels as needed."""
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = data.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            data[part] = nxt
        data = nxt
    data[parts[-1]] = value


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` (nested dicts or dotted keys) over a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        current = get_path(out, key)
        if isinstance(value, dict) and isinstance(current, dict):
            set_path(out, key, merge(current, value))
        else:
            set_path(out, key, copy.deepcopy(value))
    return out


def check_path(path: str) -> str | None:
    """Why a dotted path does not name an experiment field, or None if it does."""
    model: Any = Experiment
    walked: list[str] = []
    for part in path.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields:
            return f"{'.'.join(walked)} has no sub-fields"
        if part not in fields:
            return f"unknown field {part!r}{suggest(part, fields)}"
        walked.append(part)
        model = model_of(fields[part].annotation)
    return None


def scope_of(path: str) -> str | None:
    """The backend an axis is scoped to (its first segment names one), or None."""
    head = path.split(".", 1)[0]
    return head if head in registry.names() else None


def expand(study: Study, *, source: str = "study") -> Plan:
    """Expand the study's sweep, exclude and include rules into an ordered plan."""
    problems: list[str] = []
    warnings: list[str] = []
    bad_axes = set()
    for key in study.sweep:
        why = check_path(key)
        if why:
            bad_axes.add(key)
            problems.append(f"{source}: sweep.{key}: {why}")
    for i, rule in enumerate(study.exclude):
        if not rule:
            problems.append(f"{source}: exclude[{i}]: an empty rule would exclude everything")
        for key in rule:
            why = check_path(key)
            if why:
                problems.append(f"{source}: exclude[{i}].{key}: {why}")
    raw = math.prod(len(v) for v in study.sweep.values()) if study.sweep else 1
    if raw > RAW_COMBINATION_LIMIT:
        problems.append(
            f"{source}: sweep: {raw} combinations is more than this tool expands "
            f"({RAW_COMBINATION_LIMIT}); split the study"
        )
    if raw > RAW_COMBINATION_LIMIT:
        raise UserInputError(f"{source}: the study is invalid", problems=problems)

    chosen: dict[str, PlannedExperiment] = {}
    failing: dict[str, list[str]] = {}
    exclude_hits = [0] * len(study.exclude)
    axes = list(study.sweep)

    def add(data: dict[str, Any], where: str, *, from_include: bool) -> None:
        try:
            exp = Experiment.model_validate(data).resolved()
        except ValidationError as e:
            for line in describe(e, prefix="experiment", model=Experiment):
                failing.setdefault(line, []).append(where)
            return
        dumped = exp.model_dump(mode="json")
        for i, rule in enumerate(study.exclude):
            if all(get_path(dumped, k) == v for k, v in rule.items()):
                if from_include:
                    problems.append(
                        f"{source}: {where}: also matched by exclude[{i}] {rule}; "
                        "the include and the exclude contradict each other"
                    )
                exclude_hits[i] += 1
                return
        if exp.id not in chosen:
            params = {axis: get_path(dumped, axis) for axis in axes}
            chosen[exp.id] = PlannedExperiment(id=exp.id, params=params, experiment=exp)

    names = [n for n in study.sweep if n not in bad_axes]
    for values in itertools.product(*(study.sweep[n] for n in names)):
        combo = dict(zip(names, values, strict=True))
        data = copy.deepcopy(study.experiment)
        backend = combo.get("backend", data.get("backend", registry.default_name()))
        for path, value in combo.items():
            scope = scope_of(path)
            if scope is not None and scope != backend:
                continue
            set_path(data, path, value)
        where = "sweep " + ", ".join(f"{k}={v!r}" for k, v in combo.items())
        where = where if combo else "experiment"
        add(data, where, from_include=False)
    swept = len(chosen)
    for i, inc in enumerate(study.include):
        add(merge(study.experiment, inc), f"include[{i}]", from_include=True)

    combos = math.prod(len(study.sweep[n]) for n in names) + len(study.include)
    for line, wheres in failing.items():
        if len(wheres) == combos and combos > 1:
            problems.append(f"{source}: {line} (in every experiment of the sweep)")
        elif wheres == ["experiment"]:
            problems.append(f"{source}: {line}")
        else:
            shown = "; ".join(wheres[:3]) + ("; ..." if len(wheres) > 3 else "")
            problems.append(f"{source}: {line} (in {len(wheres)} of {combos}: {shown})")
    for i, hits in enumerate(exclude_hits):
        if hits == 0:
            warnings.append(f"exclude[{i}] {study.exclude[i]} matches no experiment")
    if chosen:
        warnings += unused_backend_options(study, {p.experiment.backend for p in chosen.values()})
    if not problems and swept == 0 and any(exclude_hits) and not study.include:
        problems.append(f"{source}: exclude: the exclude rules remove every experiment")
    if problems:
        raise UserInputError(f"{source}: the study is invalid", problems=problems)
    if not chosen:
        raise UserInputError(f"{source}: the study plans no experiment")

    experiments = list(chosen.values())
    runs = order_runs([p.id for p in experiments], study.execution)
    limit = study.execution.max_runs
    if len(runs) > limit:
        raise UserInputError(
            f"{source}: the plan has {len(runs)} runs, more than execution.max_runs ({limit})",
            problems=[
                f"{source}: execution.max_runs: raise it to at least {len(runs)} to confirm "
                "a study this large, or narrow the sweep"
            ],
        )
    return Plan(
        study=study.name,
        axes=axes,
        experiments=experiments,
        runs=runs,
        execution=study.execution,
        warnings=warnings,
    )


def unused_backend_options(study: Study, used: set[str]) -> list[str]:
    """Options blocks and scoped axes for backends that no planned experiment runs."""
    given: dict[str, list[str]] = {}
    for key in study.experiment:
        if key in registry.names():
            given.setdefault(key, []).append(f"experiment.{key}")
    for key in study.sweep:
        scope = scope_of(key)
        if scope is not None:
            given.setdefault(scope, []).append(f"sweep.{key}")
    for i, inc in enumerate(study.include):
        for key in inc:
            scope = scope_of(key)
            if scope is not None:
                given.setdefault(scope, []).append(f"include[{i}].{key}")
    return [
        f"{where}: options for backend {name!r}, but no experiment of this study runs it, "
        f"so they are ignored (backends planned: {', '.join(sorted(used))})"
        for name, wheres in given.items()
        if name not in used
        for where in wheres
    ]


def order_runs(experiment_ids: list[str], execution: Execution) -> list[PlannedRun]:
    """Order (experiment, cycle) pairs: sequential, interleaved or seeded-shuffled."""
    cycles = range(1, execution.cycles + 1)
    if execution.order == "sequential":
        pairs = [(e, c) for e in experiment_ids for c in cycles]
    elif execution.order == "interleaved":
        pairs = [(e, c) for c in cycles for e in experiment_ids]
    else:
        rng = random.Random(execution.seed)
        pairs = []
        for c in cycles:
            block = list(experiment_ids)
            rng.shuffle(block)
            pairs.extend((e, c) for e in block)
    return [
        PlannedRun(run_id=f"{e}-c{c}", experiment_id=e, cycle=c, position=i)
        for i, (e, c) in enumerate(pairs)
    ]
