"""``harness study plan``: validate a study and show its runs, in full or summarised."""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import textwrap
from collections import Counter
from collections.abc import Callable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from harness.cli.options import PlanFormat, StudyFileArg, choice, choices
from harness.cli.render import Col, console, emit, err_console, fitted, fmt, note, param_col
from harness.errors import UserInputError

if TYPE_CHECKING:
    from harness.config.experiment import Experiment, Runner
    from harness.config.study import Study
    from harness.config.sweep import Plan
    from harness.controller.runtimes.base import Runtime

#: plans with more runs than this are summarised unless --all is given
SUMMARY_RUNS = 300
#: runs shown at each end of a summarised plan
ENDS = 5
#: values listed per swept axis in a summary
VALUES_SHOWN = 12
#: the experiment fields every plan row shows, with their headers ('-' where one does not apply)
FIXED = {"backend": "backend", "device": "device", "precision": "precision", "batch_size": "batch"}
#: serving's counterpart of the batch column, shown when any experiment serves: how its
#: requests are sent (``Serving.load_text``), in place of the swept axes that text holds
LOAD = Col("load", "load", spec="", left=True, unknown="-")
LOAD_AXES = ("serving.request_rate", "serving.arrival", "serving.burstiness", "serving.concurrency")
HEAD = [Col("number", "#", spec=""), Col("run_id", "run", spec="", left=True),
        Col("cycle", "cycle", spec="")]


def study_plan(
    file: StudyFileArg,
    all_runs: Annotated[bool, typer.Option("--all", help="Print every run, however many.")] = False,
    fmt_: Annotated[
        PlanFormat,
        typer.Option("--format", parser=choice(choices(PlanFormat)), metavar="table|json|csv",
                     help="table: for people; json or csv: the full plan, for programs."),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the full plan to this file (.json or .csv) "
                     "instead of standard output."),
    ] = None,
) -> None:
    """Validate a study and show its runs without starting anything."""
    from harness.config.load import plan_study, read_yaml

    if _is_experiment(read_yaml(file)):
        _single_experiment(file)
        return
    with _kept_to_the_end():
        study, plan = plan_study(file)
    if output is not None and fmt_ == "table":
        fmt_ = _format_of(output)
    warnings = _checks(file, study, plan)
    if fmt_ == "table":
        _show(plan, all_runs=all_runs)
        _footer(plan, warnings, console.print)
        return
    text = plan.model_dump_json(indent=2) + "\n" if fmt_ == "json" else _csv(plan)
    if output is None:
        console.file.write(text)
        _footer(plan, warnings, err_console.print)  # standard output holds only the plan
        return
    from harness.results.io import atomic_write_text

    atomic_write_text(output, text)
    _footer(plan, warnings, console.print)
    console.print(f"wrote the plan ({fmt_}) to {escape(str(output))}")


@contextlib.contextmanager
def _kept_to_the_end() -> Iterator[None]:
    """No garbage collection while the plan is made, and none over its objects afterwards.

    The plan's objects (about ten per experiment) live until this command exits, soon after.
    Each pass of Python's cyclic collector over them cost 0.1-0.25 s at 100 000 experiments
    (``benchmarks/plan_scaling.py`` times the command), so they are frozen out of its passes.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _plan_runtime(runner: Runner) -> tuple[Runtime | None, list[str]]:
    """The runtime whose images the checks look at (None: no images needed or no engine)."""
    from harness.controller.runtimes import select_runtime
    from harness.errors import EnvironmentProblem

    if runner == "local":
        return None, []
    try:
        runtime, _ = select_runtime(runner)
    except EnvironmentProblem as e:
        return None, [f"{e}: the docker runner cannot start the runs until one does "
                      "(scripts/ensure-docker.sh starts one)"]
    return (runtime if runtime.name == "docker" else None), []


def _checks(file: Path, study: Study, plan: Plan) -> list[str]:
    """What would make the study's runs fail here: errors stop the plan (exit 2), warnings are said.

    Errors are what the study file gets wrong (a model folder or prompts file that is missing
    or wrong); warnings are what this host lacks and can get before the study runs (a hub id
    not in the cache, an image not built yet, GPUs whose settings cannot be changed here).
    """
    from harness.controller.preflight import check_study

    runtime, notes = _plan_runtime(study.execution.runner)
    found = check_study(study, plan, runtime, origin=str(file), model_base=Path.cwd(),
                        dataset_base=file.parent, at_start=False)
    found.raise_errors(file)
    return notes + found.warnings


def _format_of(output: Path) -> PlanFormat:
    """The format an output file's name asks for."""
    suffix = output.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".csv":
        return "csv"
    raise UserInputError(f"--output {output}: give --format json or csv (or name a .json or "
                         ".csv file)")


def _is_experiment(data: Any) -> bool:
    """Whether a file's content is a single experiment rather than a study."""
    return (isinstance(data, dict) and "model" in data
            and not {"experiment", "sweep", "name"} & data.keys())


def _single_experiment(file: Path) -> None:
    """Validate a single-experiment file, check what it names, and say how to run it."""
    from harness.config.load import load_experiment
    from harness.controller.preflight import check_experiments

    exp = load_experiment(file)
    found = check_experiments([exp], None, origin=str(file), images={}, hf_cache=None,
                              model_base=Path.cwd(), dataset_base=file.parent, at_start=False)
    found.raise_errors(file, "experiment")
    for text in found.warnings:
        note(text)
    tag = exp.spec.image_tag(exp.device)
    compose = ([f"or with Compose (image {tag}; docker-compose for Compose v1):",
                f"  {_compose_command(file, tag, _compose_datasets(file, exp))}"] if tag else
               [f"(backend {exp.backend} has no image for {exp.device}: the local runner runs it)"])
    emit([f"{file} is one experiment, not a study:", f"  {_describe(exp)}.",
          "Run it with:", f"  harness run {file}", *compose,
          "To sweep it, write a study: these fields under `experiment:`, and a `sweep:`."])


def _describe(exp: Experiment) -> str:
    load = (f"batch {exp.batch_size}" if exp.mode == "offline" else
            f"serving {exp.serving.load_text()}, {exp.serving.num_requests} requests")
    return f"experiment {exp.id}, {exp.backend} on {exp.device}, {exp.precision}, {load}, " \
        f"model {exp.model}"


def _load(exp: Experiment) -> str | None:
    """How a serving experiment's requests are sent (None: offline)."""
    return exp.serving.load_text() if exp.mode == "serving" else None


def _fixed(exp: Experiment, key: str) -> Any:
    """A fixed column's value: the experiment's field, None where its mode does not use it."""
    return None if key == "batch_size" and exp.mode == "serving" else getattr(exp, key)


def _compose_datasets(file: Path, exp: Experiment) -> Path | None:
    """The folder Compose must mount at /datasets for the files ``exp`` names (None: none).

    In Compose the experiment file is /experiment.yaml, so ``datasets/NAME`` is read from
    /datasets, which is $DATASETS_DIR; files elsewhere are not visible there.
    """
    from harness.config.datasets import named_files

    for field, value in named_files(exp):
        if Path(value).parts[:1] != ("datasets",):
            note(f"{field.path} {value!r}: Compose reads files from datasets/ beside the "
                 "experiment file (the folder $DATASETS_DIR, mounted at /datasets); move it "
                 "there to run this experiment with Compose")
        else:
            return file.parent.resolve() / "datasets"
    return None


def _compose_command(file: Path, tag: str, datasets: Path | None = None) -> str:
    """The Compose command that runs ``file`` in the service of image ``tag``."""
    import yaml

    import harness

    compose = Path(harness.__file__).resolve().parent.parent / "compose.yaml"
    service = "SERVICE"
    try:
        services = yaml.safe_load(compose.read_text(encoding="utf-8"))["services"]
        service = next(name for name, s in services.items() if s.get("image") == tag)
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration):
        compose = Path("compose.yaml")  # not a checkout: the user's own compose file
    root = compose.parent.resolve()

    def shown(path: Path) -> str:
        return f"./{path.relative_to(root)}" if path.is_relative_to(root) else str(path)

    where = "" if Path.cwd().resolve() == root else f" -f {compose}"
    mount = ("" if datasets is None or datasets == root / "studies" / "datasets"
             else f"DATASETS_DIR={shown(datasets)} ")
    return f"{mount}EXPERIMENT={shown(file.resolve())} docker compose{where} run --rm {service}"


def _extra_axes(plan: Plan) -> list[str]:
    return [a for a in plan.axes if a not in FIXED]


def _rows(plan: Plan, runs: list[Any]) -> list[dict[str, Any]]:
    """One row per run: its position, id, cycle, the fixed fields and the other swept axes."""
    extra = _extra_axes(plan)
    rows = []
    for run in runs:
        p = plan.planned(run.experiment_id)
        e = p.experiment
        rows.append({
            "number": run.position + 1, "position": run.position, "run_id": run.run_id,
            "cycle": run.cycle,
            "experiment_id": run.experiment_id,
            "gpus": plan.execution.gpus_per_run(e),
            "load": _load(e),
            **{f"param.{k}": _fixed(e, k) for k in FIXED},
            **{f"param.{a}": p.params.get(a) for a in extra},
        })
    return rows


def _params(plan: Plan) -> list[Col]:
    """The table's parameter columns: batch for offline runs, the load for serving ones."""
    modes = {p.experiment.mode for p in plan.experiments}
    fixed = [Col(f"param.{k}", header, spec="", unknown="-") for k, header in FIXED.items()
             if k != "batch_size" or "offline" in modes]
    ex = plan.execution
    gpus = ([Col("gpus", "gpus", spec="")]
            if any(ex.gpus_per_run(p.experiment) for p in plan.experiments) else [])
    serving = "serving" in modes
    axes = [param_col(a) for a in _extra_axes(plan) if not (serving and a in LOAD_AXES)]
    return fixed + ([LOAD] if serving else []) + gpus + axes


def _show(plan: Plan, *, all_runs: bool) -> None:
    """Every run, or past SUMMARY_RUNS a summary with the first and last runs."""
    console.print(f"Plan of study [bold]{escape(plan.study)}[/]:")
    runs = plan.runs
    if all_runs or len(runs) <= SUMMARY_RUNS:
        emit(fitted(_rows(plan, runs), HEAD, _params(plan), [], width=console.width).lines())
        return
    _summary(plan)
    console.print(f"the first and last {ENDS} runs (--all: every run; --format json|csv: the "
                  "full plan):")
    grid = fitted(_rows(plan, [*runs[:ENDS], *runs[-ENDS:]]), HEAD, _params(plan), [],
                  width=console.width)
    lines = list(grid.lines())
    emit([*lines[:2 + ENDS], "...", *lines[2 + ENDS:]])


def _summary(plan: Plan) -> None:
    """How many runs each swept value and each backend/device gets."""
    per_experiment = Counter(map(attrgetter("experiment_id"), plan.runs))
    weights = [per_experiment[p.id] for p in plan.experiments]
    exps = list(map(attrgetter("experiment"), plan.experiments))
    placements = _runs_per_value(
        [f"{b}/{d}" for b, d in zip(map(attrgetter("backend"), exps),
                                    map(attrgetter("device"), exps), strict=True)], weights)
    lines = ["runs per value of each swept axis:"]
    for axis in plan.axes:
        counter = _runs_per_value([p.params.get(axis) for p in plan.experiments], weights)
        shown = [f"{v}: {n}" for v, n in counter.items()][:VALUES_SHOWN]
        more = len(counter) - len(shown)
        lines.append(f"  {axis}: {', '.join(shown)}" + (f", ... {more} more values" if more else ""))
    lines.append("runs per backend/device: " + ", ".join(f"{k}: {n}" for k, n in placements.items()))
    emit(wrapped for line in lines
         for wrapped in textwrap.wrap(line, console.width, subsequent_indent="      "))


def _runs_per_value(values: list[Any], weights: list[int]) -> Counter[str]:
    """Runs per value as the table writes it, where ``weights[i]`` runs have ``values[i]``.

    Values are counted by type and value (1, 1.0 and True apart), then written out once each.
    """
    raw: Counter[tuple[type, Any]] = Counter()
    if len(set(weights)) == 1:  # every experiment runs as often (the cycles): count, then scale
        try:
            raw = Counter(zip(map(type, values), values, strict=True))
        except TypeError:  # an unhashable value (a whole block swept): counted one by one below
            raw.clear()
        else:
            raw = Counter({key: n * weights[0] for key, n in raw.items()})
    if not raw:
        for value, n in zip(values, weights, strict=True):
            raw[(str, fmt(value)) if isinstance(value, dict | list) else (type(value), value)] += n
    written: Counter[str] = Counter()
    for (_, value), n in raw.items():
        written[fmt(value, "", "-")] += n
    return written


def _footer(plan: Plan, checks: list[str], say: Callable[..., Any]) -> None:
    """The plan's warnings, what the checks found, and its size."""
    for warning in [*plan.warnings, *checks]:
        say(f"[yellow]warning:[/] {escape(warning)}")
    say(f"{len(plan.experiments)} experiments x {plan.execution.cycles} cycles = "
        f"[bold]{len(plan.runs)} runs[/] (order: {plan.execution.order})")
    for line in placement_lines(plan):
        say(escape(line))


def placement_lines(plan: Plan) -> list[str]:
    """Where the runs go: how many at once, each slot's GPUs or CPUs, GPUs per run."""
    from harness.controller.placement import cpu_sets, pins_cpu_slots, slots_for
    from harness.devices.affinity import format_cpulist, host_cpus

    ex = plan.execution
    if ex.executor == "slurm" and ex.slurm is not None:
        return [f"placement: one Slurm job per run, up to {ex.slurm.max_jobs} queued or running "
                "at once (execution.slurm.max_jobs); GPUs through gres, on the nodes Slurm picks"]
    exps = [p.experiment for p in plan.experiments]
    slots = slots_for(ex, exps)
    per_run = sorted({ex.gpus_per_run(e) for e in exps})
    at_once = (f"{slots} runs at once" if slots > 1 else "one run at a time")
    if ex.max_parallel > slots:
        at_once += f" (max_parallel {ex.max_parallel}: the GPUs or CPUs listed do not go round)"
    lines = [f"placement: {at_once}"]
    gpu_runs = any(n > 0 for n in per_run)
    if gpu_runs:
        lines.append(f"  GPUs per run: {' or '.join(str(n) for n in per_run)}, from "
                     f"execution.gpus {ex.gpus}" + (", disjoint from the other runs in flight"
                                                    if slots > 1 else ""))
    if slots > 1 and any(pins_cpu_slots(ex, e) for e in exps):
        sets = cpu_sets(host_cpus(), slots)
        lines.append("  CPU runs pinned, one CPU set per slot: "
                     + "; ".join(f"slot {i}: cpus {format_cpulist(c)}" for i, c in enumerate(sets)))
    if slots > 1 and gpu_runs:
        lines.append("  GPU runs pinned to the CPUs local to their GPUs where the host says "
                     "which (NVML or sysfs)")
    return lines


def _csv(plan: Plan) -> str:
    """The plan as CSV: one row per run with its experiment's fields and swept values."""
    extra = _extra_axes(plan)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["position", "run_id", "experiment_id", "cycle", *FIXED, *extra])
    for row in _rows(plan, plan.runs):
        writer.writerow([row["position"], row["run_id"], row["experiment_id"], row["cycle"],
                         *(row[f"param.{k}"] for k in FIXED),
                         *("" if row[f"param.{a}"] is None else row[f"param.{a}"]
                           for a in extra)])
    return out.getvalue()
