"""The report's validity warnings: every run's own, and what the study as a whole shows."""

from __future__ import annotations

from harness.analysis.report.data import Report
from harness.analysis.report.text import num
from harness.analysis.stats import METRICS
from harness.results.schema import ExperimentResult
from harness.results.wording import percent_past

HIGH_CV = 0.10  # a metric varying more than this over cycles is flagged


def _study_state(report: Report) -> None:
    w = report.warnings
    if report.manifest.state != "complete":
        pending = sum(r.status in ("pending", "running") for r in report.manifest.runs)
        failed = sum(r.status in ("failed", "interrupted") for r in report.manifest.runs)
        w.append(("study", f"study_{report.manifest.state}",
                  f"the study is {report.manifest.state}: {failed} runs failed or interrupted, "
                  f"{pending} not run; statistics cover the done runs only"))
    for text in report.plan.warnings:
        w.append(("plan", "plan_warning", text))
    if report.energy_reason:
        w.append(("study", "energy_unavailable", f"energy unavailable: {report.energy_reason}"))


def _run_warnings(report: Report, results: dict[str, ExperimentResult]) -> None:
    w = report.warnings
    for run_id, result in results.items():
        for warning in result.warnings:
            w.append((run_id, warning.code, warning.message))
        warm = result.warmup
        if warm.converged is False:
            if warm.final_cv is not None and warm.target_cv is not None:
                final, target = percent_past(warm.final_cv, warm.target_cv)
                said = f"CV {final}, above its target {target}"
            else:
                said = f"CV {num(warm.final_cv)}, above its target {num(warm.target_cv)}"
            w.append((run_id, "warmup_not_converged", f"warmup stopped at {said}"))
        if result.energy.energy_method == "unavailable" and not report.energy_reason:
            w.append((run_id, "energy_unavailable",
                      f"energy unavailable: {result.energy.unavailable_reason}"))


def _spread(report: Report) -> None:
    for _, row in report.summary.iterrows():
        for metric in METRICS:
            cv = row.get(f"{metric}_cv")
            if isinstance(cv, float) and cv > HIGH_CV:
                value, limit = percent_past(cv, HIGH_CV)
                report.warnings.append((
                    row["experiment_id"], "high_cv",
                    f"{metric} varies {value} (CV) over {int(row[f'{metric}_n'])} cycles, above "
                    f"the {limit} limit"))


def _environments(report: Report, results: dict[str, ExperimentResult]) -> None:
    keys = ("python", "platform", "harness_version")
    seen = {tuple(str(r.environment.get(k)) for k in keys)
            + (str(r.environment.get("cpu", {}).get("model")),) for r in results.values()}
    if len(seen) > 1:
        report.warnings.append((
            "study", "mixed_environments",
            f"the runs report {len(seen)} different environments (python, platform, harness "
            "version, CPU); compare them with care"))


def _overlaps(report: Report, results: dict[str, ExperimentResult]) -> None:
    """Say when runs overlapped others (execution.max_parallel): they shared power and heat."""
    done = [r for r in report.manifest.runs if r.run_id in results]
    shared = [r for r in done if r.overlapped_with]
    if not shared:
        return
    n, m = len(shared), len(done)
    if n < m:
        report.warnings.append((
            "study", "mixed_overlap",
            f"{n} of {m} runs overlapped other runs: host power and heat were shared; energy "
            f"comparisons here mix solo and overlapped runs (results.csv: overlapped_with)"))
    else:
        report.warnings.append((
            "study", "all_overlapped",
            f"{n} of {m} runs overlapped other runs: host power and heat were shared; compare "
            f"their energy with runs measured alone with care"))


def collect_warnings(report: Report, results: dict[str, ExperimentResult]) -> None:
    """Fill ``report.warnings``: state, each run's warnings, overlaps, spread, environments."""
    _study_state(report)
    _run_warnings(report, results)
    _overlaps(report, results)
    _spread(report)
    _environments(report, results)
    for note in report.effects.notes:
        report.warnings.append(("effects", "effect_note", note))
