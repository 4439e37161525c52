"""Serving studies' figures: energy and latency against the load, and each run's timeline.

``load_sweep`` draws energy per request and per output token, throughput and p90 TTFT
against the swept load axis (``serving.request_rate`` or ``serving.concurrency``); when energy
is unavailable its panels say why. ``timeline`` draws one serving run: power over the whole
load where it was measured, output tokens per second and requests in flight, with the steady
window shaded (docs/serving.md, section 7).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis import plots
from harness.analysis.plots import STYLE, TITLE_WIDTH, plt
from harness.results.io import read_model
from harness.results.schema import ExperimentResult

#: the axes that set the load, in the order a sweep figure prefers them
LOAD_AXES = ("serving.request_rate", "serving.concurrency")
SWEEP_PANELS = ("j_per_request", "j_per_output_token", "output_tokens_per_s", "ttft_p90_s")
ENERGY_PANELS = ("j_per_request", "j_per_output_token")
#: width of the bins of the token-rate curve (s)
BIN_S = 0.25


def load_axes(axes: list[str], levels: dict[str, list[Any]]) -> list[str]:
    """The swept axes that set the load (with at least two levels)."""
    return [a for a in LOAD_AXES if a in axes and len(levels.get(a, [])) >= 2]


def load_sweep(table: pd.DataFrame, summary: pd.DataFrame, axis: str, levels: list[Any],
               path: Path, energy_reason: str | None) -> Path:
    """Energy per request and per output token, throughput and p90 TTFT by the load axis."""
    col = f"param.{axis}"
    with plt.rc_context(STYLE):
        fig, axs = plt.subplots(2, 2, figsize=(11, 7.5))
        for ax, metric in zip(axs.flat, SWEEP_PANELS, strict=True):
            plots.panel(ax, table, summary, col, levels, metric)
            if metric in ENERGY_PANELS and energy_reason is not None:
                ax.text(0.5, 0.5, textwrap.fill(f"energy unavailable: {energy_reason}", 50),
                        transform=ax.transAxes, ha="center", va="center", fontsize=8)
        handles, labels = axs.flat[2].get_legend_handles_labels()
        if len(handles) > 1:
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                       ncol=min(3, len(handles)), frameon=False)
        fig.suptitle(textwrap.fill(f"Serving: energy and latency by {axis} (steady window; "
                                   "mean and 95 % CI over cycles, dots are runs)", TITLE_WIDTH))
        fig.tight_layout()
        return plots.save(fig, path)


def _requests(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.strip()]


def _rates(
    requests: list[dict[str, Any]], end_s: float
) -> tuple[list[float], list[float], list[float]]:
    """Bin centres, output tokens/s and mean requests in flight per bin."""
    bins = max(1, int(end_s / BIN_S) + 1)
    tokens, busy = [0.0] * bins, [0.0] * bins
    for r in requests:
        for t, n in r.get("arrivals") or []:
            tokens[min(bins - 1, int(t / BIN_S))] += n
        sent, end = r.get("sent_s"), r.get("end_s")
        if sent is None or end is None:
            continue
        for b in range(int(sent / BIN_S), min(bins, int(end / BIN_S) + 1)):
            busy[b] += max(0.0, min(end, (b + 1) * BIN_S) - max(sent, b * BIN_S))
    centres = [(b + 0.5) * BIN_S for b in range(bins)]
    return centres, [v / BIN_S for v in tokens], [v / BIN_S for v in busy]


def _power(run_dir: Path) -> pd.DataFrame | None:
    source = run_dir / "timeseries.csv"
    try:
        samples = pd.read_csv(source)
    except (OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
        return None
    if "phase" not in samples.columns or "power_w" not in samples.columns:
        return None
    load = samples[samples["phase"] == "load"].copy()
    load["power_w"] = pd.to_numeric(load["power_w"], errors="coerce")
    load = load.dropna(subset=["power_w", "t_s"])
    return load if not load.empty else None


def timeline(run_dir: Path, path: Path) -> str | None:
    """One serving run's load over time with its steady window; why not drawn, or None."""
    try:
        result = read_model(run_dir / "result.json", ExperimentResult)
    except (OSError, ValueError):
        return "no readable result.json"
    s = result.serving
    if s is None or s.window_start_s is None or s.window_end_s is None or s.load_s is None:
        return "not a serving run"
    requests = _requests(run_dir / "requests.jsonl")
    power = _power(run_dir)
    with plt.rc_context(STYLE):
        rows = 2 if power is not None else 1
        fig, axs = plt.subplots(rows, 1, figsize=(8, 2.8 * rows + 0.6), sharex=True, squeeze=False)
        if power is not None:
            ax = axs[0][0]
            for device, part in power.groupby("device", sort=False):
                ax.plot(part["t_s"], part["power_w"], lw=1.2, label=f"power ({device})")
            ax.set_ylabel("power (W)")
            ax.set_ylim(bottom=0)
            ax.legend(loc="lower right")
        ax = axs[-1][0]
        centres, tokens, busy = _rates(requests, s.load_s)
        ax.plot(centres, tokens, lw=1.2, color="tab:green", label="output tokens/s")
        ax.set_ylabel("output tokens/s")
        twin = ax.twinx()
        twin.plot(centres, busy, lw=1.0, color="tab:purple", label="requests in flight")
        twin.set_ylabel("requests in flight")
        lines = ax.get_lines() + twin.get_lines()
        ax.legend(lines, [str(line.get_label()) for line in lines], loc="upper right")
        ax.set_xlabel("time since the load began (s)")
        for row in axs:
            row[0].axvspan(s.window_start_s, s.window_end_s, color="tab:orange", alpha=0.15,
                           label="steady window" if row is axs[0] else None)
        verdict = "steady window" if s.window_found else "no steady window: the whole load"
        fig.suptitle(f"Serving run {run_dir.name}: {verdict} ({result.steady_state.verdict}), "
                     f"shaded")
        fig.tight_layout()
        plots.save(fig, path)
    return None
