"""Expand a study into a plan of runs. Pure: no I/O, no clocks, no randomness but the seed."""

from __future__ import annotations

import contextlib
import gc
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.backends import registry
from harness.config.canonical import id_of
from harness.config.experiment import Experiment, id_text
from harness.config.gpu import device_problem
from harness.config.grid import Grid
from harness.config.paths import check_path, copied, get_parts, get_path, merge, scope_of
from harness.config.problems import describe
from harness.config.study import Execution, Study
from harness.errors import UserInputError

RAW_COMBINATION_LIMIT = 1_000_000


@dataclass(frozen=True)
class PlannedExperiment:
    """One distinct experiment of a study and the swept values that produced it.

    A record rather than a model: a plan can hold 100 000, made from values validated already
    (``model_construct`` of a model took about 13 % of planning them). Inside a ``Plan`` pydantic
    validates and dumps it as it does a model's fields (plan.json; unknown keys refused).
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

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
        return self._by_id[experiment_id].experiment

    def planned(self, experiment_id: str) -> PlannedExperiment:
        """The planned experiment with this id (its swept values too)."""
        return self._by_id[experiment_id]

    @cached_property
    def _by_id(self) -> dict[str, PlannedExperiment]:
        """The planned experiments by id (looked up once per run; a plan can hold 100 000)."""
        return {planned.id: planned for planned in self.experiments}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, as pydantic makes it; a copy with changed fields drops the index by id."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.__dict__.pop("_by_id", None)
        return copied


def expand(study: Study, *, source: str = "study") -> Plan:
    """Expand the study's sweep, exclude and include rules into an ordered plan."""
    with _collection_paused():
        problems, bad_axes = _rule_problems(study, source)
        kept = _Kept(study, source)
        swept = kept.sweep(Grid(study.experiment, {
            k: v for k, v in study.sweep.items() if k not in bad_axes
        }, dumps=bool(study.exclude)))
        kept.include(study.experiment, study.include)
        problems += kept.problems + kept.failures()
        problems += [f"{source}: {why}" for p in kept.chosen.values()
                     if (why := study.execution.placement_problem(p.experiment))]
        problems += [f"{source}: experiment {p.id}: {why}" for p in kept.chosen.values()
                     if (why := device_problem(p.experiment.gpu, p.experiment.device,
                                               study.execution.simulated_gpus))]
        if not problems and swept == 0 and any(kept.exclude_hits) and not study.include:
            problems.append(f"{source}: exclude: the exclude rules remove every experiment")
        if problems:
            raise UserInputError(f"{source}: the study is invalid", problems=problems)
        if not kept.chosen:
            raise UserInputError(f"{source}: the study plans no experiment")
        experiments = list(kept.chosen.values())
        return Plan(
            study=study.name,
            axes=list(study.sweep),
            experiments=experiments,
            runs=_bounded_runs([p.id for p in experiments], study.execution, source),
            execution=study.execution,
            warnings=kept.warnings(study),
        )


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a plan is made.

    Expansion makes several objects per experiment and frees few; with the collector on, its
    passes over the growing heap took about 40 % of expanding 100 000 experiments.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _rule_problems(study: Study, source: str) -> tuple[list[str], set[str]]:
    """Problems with the sweep's and exclude rules' paths, and the sweep axes that are bad."""
    problems: list[str] = []
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
        raise UserInputError(f"{source}: the study is invalid", problems=problems)
    return problems, bad_axes


class _Kept:
    """The distinct experiments kept so far, what failed validation, and the excludes' hits."""

    def __init__(self, study: Study, source: str) -> None:
        self.source = source
        self.exclude = study.exclude
        self.axes = [(axis, axis.split(".")) for axis in study.sweep]
        self.chosen: dict[str, PlannedExperiment] = {}
        #: problem line -> where it happened (combinations or includes)
        self.failing: dict[str, list[str]] = {}
        self.exclude_hits = [0] * len(study.exclude)
        self.problems: list[str] = []
        #: combinations of the sweep plus includes, which ``failures`` counts against
        self.combinations = 0

    def sweep(self, grid: Grid) -> int:
        """Keep the grid's experiments; how many distinct ones it gave."""
        self.combinations += len(grid)
        for point in grid.points():
            built = grid.build(point)
            if built is not None:
                self.keep(*built)
            elif (exp := self.validate(grid.data(point), grid.where(point))) is not None:
                self.keep(exp.resolved())
        return len(self.chosen)

    def include(self, base: dict[str, Any], includes: list[dict[str, Any]]) -> None:
        """Keep each include merged over the base experiment."""
        self.combinations += len(includes)
        for i, inc in enumerate(includes):
            where = f"include[{i}]"
            if (exp := self.validate(merge(base, inc), where)) is not None:
                self.keep(exp.resolved(), where=where)

    def validate(self, data: dict[str, Any], where: str) -> Experiment | None:
        """The experiment, or None after recording why it is invalid."""
        try:
            return Experiment.model_validate(data)
        except ValidationError as e:
            for line in describe(e, prefix="experiment", model=Experiment):
                self.failing.setdefault(line, []).append(where)
            return None

    def keep(
        self,
        exp: Experiment,
        dumped: dict[str, Any] | None = None,
        text: str | None = None,
        params: dict[str, Any] | None = None,
        *,
        where: str = "",
    ) -> None:
        """Keep a resolved experiment unless an exclude rule matches it or it is kept already.

        ``dumped`` is its JSON-mode dump, ``text`` its ``id_text`` and ``params`` its value
        at each axis (its own copies), where the caller has them; ``where`` names an include
        (which no rule may exclude).
        """
        if dumped is None and (self.exclude or text is None or params is None):
            dumped = exp.model_dump(mode="json", exclude_none=False)
        for i, rule in enumerate(self.exclude):
            if all(get_path(dumped, k) == v for k, v in rule.items()):
                if where:
                    self.problems.append(
                        f"{self.source}: {where}: also matched by exclude[{i}] {rule}; "
                        "the include and the exclude contradict each other"
                    )
                self.exclude_hits[i] += 1
                return
        eid = id_of(id_text(exp, dumped) if text is None else text)  # exp.id, from what is made
        if eid not in self.chosen:
            if params is None:  # copies of containers: dumps share their parts
                params = {axis: copied(get_parts(dumped, parts)) for axis, parts in self.axes}
            self.chosen[eid] = PlannedExperiment(eid, params, exp)

    def failures(self) -> list[str]:
        """One problem per distinct validation failure, saying where it happened."""
        combos = self.combinations
        problems = []
        for line, wheres in self.failing.items():
            if len(wheres) == combos and combos > 1:
                problems.append(f"{self.source}: {line} (in every experiment of the sweep)")
            elif wheres == ["experiment"]:
                problems.append(f"{self.source}: {line}")
            else:
                shown = "; ".join(wheres[:3]) + ("; ..." if len(wheres) > 3 else "")
                problems.append(f"{self.source}: {line} (in {len(wheres)} of {combos}: {shown})")
        return problems

    def warnings(self, study: Study) -> list[str]:
        """Exclude rules that matched nothing, and options for backends that nothing runs."""
        found = [
            f"exclude[{i}] {rule} matches no experiment"
            for i, (rule, hits) in enumerate(zip(self.exclude, self.exclude_hits, strict=True))
            if hits == 0
        ]
        if self.chosen:
            used: set[str] = {p.experiment.backend for p in self.chosen.values()}
            found += unused_backend_options(study, used)
        return found


def _bounded_runs(experiment_ids: list[str], execution: Execution, source: str) -> list[PlannedRun]:
    """The ordered runs, refused when there are more than ``execution.max_runs``."""
    runs = order_runs(experiment_ids, execution)
    limit = execution.max_runs
    if len(runs) > limit:
        raise UserInputError(
            f"{source}: the plan has {len(runs)} runs, more than execution.max_runs ({limit})",
            problems=[
                f"{source}: execution.max_runs: raise it to at least {len(runs)} to confirm "
                "a study this large, or narrow the sweep"
            ],
        )
    return runs


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
    run = PlannedRun.__pydantic_validator__.validate_python  # a plan can hold 100 000 runs
    return [
        run({"run_id": f"{e}-c{c}", "experiment_id": e, "cycle": c, "position": i})
        for i, (e, c) in enumerate(pairs)
    ]
