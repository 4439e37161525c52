"""What a report is built from: the study's plan, manifest, tables, effects, fronts, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import pareto
from harness.analysis.effects import EFFECT_METRICS, Effects
from harness.analysis.report.text import RATIO_SPEC, ci, num
from harness.config.sweep import Plan
from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest, RunSpec

#: (where, code, message) of one validity warning
Warning3 = tuple[str, str, str]


@dataclass
class Report:
    """What ``build`` produced: tables, effects, fronts, figures and every note."""

    study_dir: Path
    plan: Plan
    manifest: Manifest
    table: pd.DataFrame
    summary: pd.DataFrame
    effects: Effects
    fronts: list[pareto.Front]
    energy_reason: str | None
    figures: list[Path] = field(default_factory=list)
    skipped_figures: list[str] = field(default_factory=list)
    warnings: list[Warning3] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def serving_runs(self) -> dict[str, bool]:
        """Whether each run of the table measured a server (mode: serving)."""
        if "mode" not in self.table.columns:
            return {}
        return {str(r): m == "serving" for r, m in zip(self.table["run_id"], self.table["mode"],
                                                        strict=True)}

    @property
    def failed(self) -> pd.DataFrame:
        """Runs that are not done: run_id, status, reason, message."""
        rows = [
            {"run_id": r.run_id, "status": r.status, "reason": r.reason or "",
             "message": r.message or ""}
            for r in self.manifest.runs if r.status != "done"
        ]
        return pd.DataFrame(rows, columns=["run_id", "status", "reason", "message"])

    def headline(self) -> list[str]:
        """Lines that say which swept parameter moves each metric most, with intervals."""
        lines = []
        for metric, label in EFFECT_METRICS.items():
            if metric == "j_per_output_token" and self.energy_reason:
                lines.append(f"{label}: unavailable: {self.energy_reason}")
                continue
            ranked = self.effects.ranking[self.effects.ranking["metric"] == metric]
            if ranked.empty:
                continue
            parts = [rank_text(r) for _, r in ranked.sort_values("rank").iterrows()]
            lines.append(f"{label}: " + "; ".join(parts))
        return lines


def rank_text(r: pd.Series) -> str:
    """One ranked effect: its rank, span, strongest level against the reference, interval."""
    return (
        f"#{int(r['rank'])} {r['parameter']} ({num(r['fold_span'], '#.3g')}x span; "
        f"{r['strongest_level']} vs {r['reference']}: "
        f"x{ci(r['ratio'], r['ci95_low'], r['ci95_high'], RATIO_SPEC)}"
        f", {int(r['matched_combinations'])} matched)"
    )


def plan_levels(plan: Plan) -> dict[str, list[Any]]:
    """Each swept axis's values in plan order (the order of the study's sweep), None left out."""
    levels: dict[str, list[Any]] = {axis: [] for axis in plan.axes}
    for planned in plan.experiments:
        for axis in plan.axes:
            value = planned.params.get(axis)
            if value is not None and value not in levels[axis]:
                levels[axis].append(value)
    return levels


def done_results(study_dir: Path, manifest: Manifest) -> dict[str, ExperimentResult]:
    """The result of every done run, by run id."""
    found = {}
    for rec in manifest.runs:
        path = study_dir / "runs" / rec.run_id / "result.json"
        if rec.status == "done" and path.exists():
            found[rec.run_id] = read_model(path, ExperimentResult)
    return found


def run_spec(study_dir: Path, run_id: str) -> RunSpec | None:
    """What a run's agent was given (config.json), or None when it cannot be read."""
    try:
        return read_model(study_dir / "runs" / run_id / "config.json", RunSpec)
    except (OSError, ValueError):
        return None
