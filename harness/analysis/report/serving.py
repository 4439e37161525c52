"""The report's serving section: per run, the load, its steady window, energy, latency, goodput."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.analysis.report.data import Report
from harness.analysis.report.render import Block, Heading, Para, Table
from harness.analysis.report.text import num
from harness.config.datasets import DatasetFile
from harness.config.experiment import Experiment
from harness.config.serving import Lengths
from harness.results.schema import ExperimentResult


def _lengths(lengths: Lengths, center: int) -> str:
    if lengths.distribution == "fixed":
        return f"{center}"
    low, high = lengths.bounds(center)
    shape = ("uniform" if lengths.distribution == "uniform"
             else f"lognormal (median {center}, sigma {lengths.spread:g})")
    return f"{shape} in {low}-{high}"


def _requests(exp: Experiment, recorded: dict[str, DatasetFile]) -> str:
    s, w = exp.serving, exp.workload
    if s.dataset != "synthetic":
        entry = recorded.get(s.dataset)
        where = f" ({entry.path}, sha256 {entry.sha256})" if entry else " (not recorded)"
        return f"requests file {s.dataset}{where}, its first {s.num_requests} requests"
    return (f"{s.num_requests} synthetic requests (seed {w.seed}), prompt tokens "
            f"{_lengths(s.input_length, w.input_tokens)}, output tokens "
            f"{_lengths(s.output_length, w.output_tokens)}")


def serving_setup_lines(datasets: Sequence[DatasetFile], exps: Sequence[Experiment],
                        results: dict[str, ExperimentResult]) -> list[str]:
    """The Setup lines of serving experiments: their requests, load and measurement."""
    recorded = {d.source: d for d in datasets if d.field == "serving.dataset"}
    lines = []
    for exp in (e for e in exps if e.mode == "serving"):
        m = exp.measurement
        lines.append(
            f"serving: {_requests(exp, recorded)}, streamed from the engine's OpenAI-compatible "
            f"server (generation goes on past EOS) after {exp.serving.warmup_requests} warmup "
            f"requests; idle power for {m.baseline_s:g} s before the server starts, loaded idle "
            f"for {m.loaded_idle_s:g} s with it up; power sampled every {m.sample_interval_ms} "
            "ms; energy, tokens and throughput over the steady window (docs/serving.md)")
    lines = list(dict.fromkeys(lines))
    hashes = {r.serving.requests_sha256 for r in results.values() if r.serving is not None}
    if hashes:
        lines.append(f"serving loads as sent: {len(hashes)} distinct (prompts, lengths and send "
                     "times; each run's serving.requests_sha256 names its own)")
    return lines


def _load(r: ExperimentResult) -> str:
    s = r.experiment.serving
    parts = [f"{num(s.request_rate)}/s {s.arrival}" if s.request_rate else "all at once"]
    if s.concurrency:
        parts.append(f"concurrency {s.concurrency}")
    return ", ".join(parts) + f", {s.num_requests} requests"


def _row(run_id: str, r: ExperimentResult) -> dict[str, str]:
    s = r.serving
    assert s is not None
    window = (f"{num(s.window_start_s, '.3g')}-{num(s.window_end_s, '.3g')} s"
              if s.window_found else "none: whole load")
    return {
        "run": run_id,
        "load": _load(r),
        "sent/s": num(s.achieved_request_rate, ".4g"),
        "steady window": f"{window} ({r.steady_state.verdict})",
        "J/request": num(r.energy.j_per_request),
        "J/out-tok": num(r.energy.j_per_output_token),
        "out tok/s": num(r.throughput.output_tokens_per_s, ".4g"),
        "TTFT p90 s": num(r.latency.ttft.p90_s),
        "TPOT p90 s": num(r.latency.tpot.p90_s),
        "running": num(s.mean_running_requests, ".3g"),
        "SLO met": num(s.slo_attainment, ".0%") if s.slo_attainment is not None else "n/a",
        "goodput req/s": num(s.goodput_requests_per_s, ".4g"),
        "J/good request": num(s.j_per_good_request),
    }


def serving_section(report: Report, results: dict[str, ExperimentResult]) -> list[Block]:
    """The serving runs' table, or nothing in a study without serving runs."""
    served = {k: r for k, r in results.items() if r.serving is not None}
    if not served:
        return []
    rule = next(iter(served.values())).serving
    return [
        Heading(2, "Serving"),
        Para("Each serving run measured the engine's OpenAI-compatible server under the load "
             "shown. Energy, throughput and tokens are over the steady window "
             f"({rule.rule if rule else ''}), tokens counted by arrival; latency is over every "
             "request; 'running' is the engine's mean running batch in the window where it "
             "exports one; SLO met is the share of requests meeting the study's objectives and "
             "goodput the finished requests per second that met them (docs/serving.md)."),
        Table(pd.DataFrame([_row(k, r) for k, r in sorted(served.items())])),
    ]
