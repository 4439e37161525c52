"""The report's setup section: what was measured, with what, on what, and how.

What an appendix states: the model (path or hub id), precisions, every engine with its
version, the workload (source, hash, token lengths, counts), decoding and measurement
settings, hardware, runner and execution; and, with fewer than 3 runs per experiment, why the
intervals are wide.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from scipy import stats as sps

from harness.analysis.report.data import Report, run_spec
from harness.analysis.report.render import Block, Heading, Items, Para
from harness.analysis.report.serving import serving_setup_lines
from harness.config.experiment import Experiment, Measurement, Workload
from harness.model_identity import PATH_PREFIXES
from harness.results.schema import ExperimentResult

#: runs per experiment from which intervals are considered usable
MIN_CYCLES = 3
#: the n the note compares a short study with
COMPARED_N = 5


def _experiments(report: Report) -> list[Experiment]:
    return [p.experiment for p in report.plan.experiments]


def model_lines(report: Report) -> list[str]:
    """One line per model: the reference as written and whether it is a folder or a hub id."""
    first_run: dict[str, str] = {}
    for rec in report.manifest.runs:
        first_run.setdefault(report.plan.experiment(rec.experiment_id).model, rec.run_id)
    lines = []
    for model, run_id in first_run.items():
        spec = run_spec(report.study_dir, run_id)
        folder = model.startswith(PATH_PREFIXES) or (spec is not None and spec.model_path != model)
        if folder:
            base = report.manifest.working_dir
            host = Path(model) if Path(model).is_absolute() or not base else Path(base) / model
            lines.append(f"model: {model} (a folder: {host})")
        else:
            lines.append(f"model: {model} (a Hugging Face hub id, read from the local cache)")
    return lines


def precision_line(exps: list[Experiment], axes: list[str]) -> str:
    """The precisions the experiments ran at."""
    swept = " (swept)" if "precision" in axes else ""
    return f"precision: {', '.join(dict.fromkeys(e.precision for e in exps))}{swept}"


def engine_lines(results: dict[str, ExperimentResult], backends: Iterable[str] = ()) -> list[str]:
    """One line per backend: its engine and version, torch's version, and how many runs."""
    engines: dict[str, set[str]] = {}
    torch: dict[str, set[str]] = {}
    runs: Counter[str] = Counter()
    for result in results.values():
        backend, info = result.experiment.backend, result.backend_info
        packages = result.environment.get("packages") or {}
        engines.setdefault(backend, set()).add(
            f"{info['engine']} {info.get('engine_version') or '(version not recorded)'}"
            if info.get("engine") else "engine not recorded")
        if packages.get("torch"):
            torch.setdefault(backend, set()).add(str(packages["torch"]))
        runs[backend] += 1
    lines = []
    for backend in dict.fromkeys([*backends, *sorted(engines)]):
        if backend not in engines:
            lines.append(f"backend {backend}: no run done, so its engine version is unknown")
            continue
        on = f" on torch {', '.join(sorted(torch[backend]))}" if backend in torch else ""
        lines.append(f"backend {backend}: {', '.join(sorted(engines[backend]))}{on} "
                     f"({plural(runs[backend], 'run')})")
    return lines


def _source(report: Report, w: Workload) -> str:
    if w.dataset == "synthetic":
        return (f"synthetic prompts, {w.num_prompts} of exactly {w.input_tokens} random token "
                f"ids each (seed {w.seed})")
    recorded = {d.source: d for d in report.manifest.datasets if d.field == "workload.dataset"}
    entry = recorded.get(w.dataset)
    where = f" ({entry.path}, sha256 {entry.sha256})" if entry else " (not recorded)"
    return (f"prompts file {w.dataset}{where}, its first {w.num_prompts} non-blank prompts, each "
            f"cut to at most {w.input_tokens} tokens")


def workload_lines(report: Report, results: dict[str, ExperimentResult]) -> list[str]:
    """Each workload (source, hash, sizes), then the prompts as sent: token lengths, counts."""
    lines = [f"workload: {_source(report, w)}; {w.output_tokens} output tokens per prompt "
             "(generation goes on past EOS)"
             for w in dict.fromkeys(e.workload for e in _experiments(report) if e.mode == "offline")]
    groups: dict[str | None, list[tuple[str, ExperimentResult]]] = {}
    for run_id, result in results.items():
        if result.serving is not None:  # serving runs: serving_setup_lines
            continue
        groups.setdefault(result.tokens.prompts_sha256, []).append((run_id, result))
    for digest, runs in groups.items():
        backends = ", ".join(dict.fromkeys(r.experiment.backend for _, r in runs))
        run_id, first = runs[0]
        per_pass = first.tokens.requests // max(first.tokens.iterations, 1)
        lengths = _input_lengths(report.study_dir / "runs" / run_id, per_pass)
        if lengths and min(lengths) == max(lengths):
            sizes = f"{lengths[0]} input tokens each"
        elif lengths:
            sizes = (f"{min(lengths)}-{max(lengths)} input tokens each (mean "
                     f"{statistics.fmean(lengths):.1f})")
        else:
            sizes = (f"{first.tokens.input_tokens / max(first.tokens.requests, 1):.1f} input "
                     "tokens each on average")
        passes = sorted({r.tokens.iterations for _, r in runs})
        hashed = f"token ids sha256 {digest}" if digest else "no token hash recorded"
        lines.append(f"prompts as sent ({backends}): {per_pass} prompts, {sizes}; {hashed}; "
                     f"each measured window went {_times(passes)} over them")
    return lines


def _times(values: list[int]) -> str:
    if len(values) > 1:
        return f"{values[0]}-{values[-1]} times"
    return {1: "once", 2: "twice"}.get(values[0], f"{values[0]} times")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``n word``, or ``n words`` (default: word + s) when n is not 1."""
    return f"{n} {word if n == 1 else words or word + 's'}"


def _input_lengths(run_dir: Path, count: int) -> list[int]:
    """The input tokens of the first ``count`` requests of a run (requests.jsonl), if any."""
    try:
        lines = (run_dir / "requests.jsonl").read_text(encoding="utf-8").splitlines()[:count]
        return [int(json.loads(line)["input_tokens"]) for line in lines]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def decoding_line(exps: list[Experiment]) -> str:
    """How tokens were chosen."""
    said = []
    for d in dict.fromkeys(e.decoding for e in exps):
        said.append("greedy (temperature 0)" if d.temperature == 0 else
                    f"sampling at temperature {d.temperature:g}, top_p {d.top_p:g}, top_k {d.top_k}")
    return "decoding: " + "; ".join(said)


def _measurement(m: Measurement) -> str:
    warmup = (f"warmup until the batch-latency CV is at most {m.warmup_until_cv:.0%} (at most "
              f"{m.warmup_max_batches} batches)" if m.warmup_until_cv is not None else
              f"warmup {plural(m.warmup_batches, 'batch', 'batches')}")
    return (f"measurement: idle power for {m.baseline_s:g} s before the model loads; {warmup}; "
            f"a measured window of at least {m.min_window_s:g} s (the prompts repeat until it "
            f"lasts that long); power sampled every {m.sample_interval_ms} ms; prefill/decode "
            f"split {'measured' if m.prefill_split else 'not measured'}")


def hardware_line(results: dict[str, ExperimentResult]) -> str:
    """The CPUs and GPUs the runs report."""
    cpus: Counter[str] = Counter()
    gpus: Counter[str] = Counter()
    for result in results.values():
        cpu = result.environment.get("cpu") or {}
        cpus[f"{cpu.get('model') or 'unknown CPU'} ({cpu.get('logical_cores') or '?'} logical "
             "cores)"] += 1
        sensor = result.environment.get("sensor") or {}
        names = [str(d.get("name")) for d in sensor.get("devices") or [] if isinstance(d, dict)]
        if names:
            gpus[", ".join(f"{n} x {name}" for name, n in Counter(names).items())] += 1
    if not results:
        return "hardware: unknown (no run is done)"
    gpu = "; GPUs " + " or ".join(gpus) if gpus else "; no GPU measured"
    return f"hardware: CPU {' or '.join(cpus)}{gpu}"


def runner_line(report: Report) -> str:
    """The runner, why it was chosen, and the images the runs used."""
    m = report.manifest
    images = sorted({(r.image.tag, r.image.id or "n/a") for r in m.runs if r.image})
    used = ("; images " + ", ".join(f"{tag} ({image_id[:19]})" for tag, image_id in images)
            if images else "; no container image (the agent ran in the host's Python)")
    return f"runner: {m.runner} ({m.runner_reason}){used}"


def execution_line(report: Report) -> str:
    """How many runs, in which order, with which pauses."""
    ex = report.plan.execution
    seed = f" (seed {ex.seed})" if ex.order == "shuffled" else ""
    at_once = (f", up to {ex.max_parallel} runs at once (max_parallel)"
               if ex.max_parallel > 1 else "")
    return (f"execution: {len(report.plan.experiments)} experiments x {ex.cycles} cycles = "
            f"{len(report.plan.runs)} runs, order {ex.order}{seed}, {ex.gap_s:g} s between runs"
            f"{at_once}")


def _t_half_width(n: int) -> float:
    """The half-width of a 95 % t-interval of a mean, in units of the sample's std."""
    return float(sps.t.ppf(0.975, n - 1)) / math.sqrt(n)


def cycles_note(report: Report) -> str | None:
    """Why intervals are wide when an experiment has fewer than MIN_CYCLES done runs."""
    done = [int(n) for n in report.summary.get("runs_done", []) if int(n) > 0]
    if not done or min(done) >= MIN_CYCLES:
        return None
    n = min(done)
    cycles = report.plan.execution.cycles
    if n == 1:
        head = ("Some experiments have a single done run: no interval can be given for them "
                "(n/a), and their means carry no estimate of run-to-run spread.")
    else:
        ratio = _t_half_width(n) / _t_half_width(COMPARED_N)
        head = (f"Intervals are wide: some experiments have only {n} done runs. A 95 % "
                "interval of a mean is mean ± t·s/√n, with t the 97.5 % quantile of Student's t "
                f"with n-1 degrees of freedom: t = {sps.t.ppf(0.975, n - 1):.2f} at n = {n} "
                f"against {sps.t.ppf(0.975, COMPARED_N - 1):.2f} at n = {COMPARED_N}, so for the "
                f"same run-to-run spread the interval at n = {n} is {ratio:.1f} times as wide as "
                f"at n = {COMPARED_N}.")
    return (f"{head} The study ran {plural(cycles, 'cycle')}; run at least "
            f"{MIN_CYCLES} (from {COMPARED_N}, bootstrap intervals are added) for intervals a "
            "reader can use.")


def setup_section(report: Report, results: dict[str, ExperimentResult]) -> list[Block]:
    """The Setup heading, its lines, and the note on short studies."""
    exps = _experiments(report)
    lines = [
        *model_lines(report),
        precision_line(exps, report.plan.axes),
        *engine_lines(results, dict.fromkeys(e.backend for e in exps)),
        *workload_lines(report, results),
        *serving_setup_lines(report.manifest.datasets, exps, results),
        decoding_line(exps),
        *(_measurement(m) for m in dict.fromkeys(e.measurement for e in exps
                                                  if e.mode == "offline")),
        hardware_line(results),
        runner_line(report),
        execution_line(report),
    ]
    blocks: list[Block] = [Heading(2, "Setup"), Items(lines)]
    note = cycles_note(report)
    if note:
        blocks.append(Para(note))
    return blocks
