"""Figures of a study as PNG files (matplotlib, Agg backend): effects, power timelines, fronts."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.analysis.pareto import Front  # noqa: E402
from harness.analysis.stats import LABELS, param_columns  # noqa: E402

DPI = 150
TITLE_WIDTH = 110  # characters per title line at the default font size of an 11-inch figure
STYLE: Any = {  # rcParams; typed loosely as matplotlib wants its literal keys
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
}
PHASE_COLORS = {"baseline": "tab:gray", "window": "tab:blue", "prefill": "tab:orange",
                "load": "tab:blue"}
MAX_SERIES = 12
#: a line every figure saved within ``marked`` carries (say, that its energy is simulated)
_MARK: ContextVar[str | None] = ContextVar("figure_mark", default=None)


def _fmt(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _short(col: str) -> str:
    return col.removeprefix("param.").split(".")[-1]


def experiment_label(row: pd.Series, columns: list[str]) -> str:
    """A short label of an experiment's swept values, such as ``batch_size=8, precision=fp32``."""
    return ", ".join(f"{_short(c)}={_fmt(row[c])}" for c in columns) or str(row["experiment_id"])


@contextmanager
def marked(text: str | None) -> Iterator[None]:
    """Figures saved in this block carry ``text`` under them, in red (None: no mark)."""
    token = _MARK.set(text)
    try:
        yield
    finally:
        _MARK.reset(token)


def save(fig: Any, path: Path) -> Path:
    """Write a figure as PNG (with the mark of the ``marked`` block it is in) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mark = _MARK.get()
    if mark:
        fig.text(0.5, 0.0, mark, ha="center", va="top", color="tab:red", fontweight="bold")
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def panel(ax: Any, table: pd.DataFrame, summary: pd.DataFrame, axis_col: str,
          levels: list[Any], metric: str) -> None:
    """One metric's mean and 95 % interval by ``axis_col``, one line per other setting."""
    others = [c for c in param_columns(summary) if c != axis_col]
    keys = [_fmt(v) for v in levels]
    xpos = {k: i for i, k in enumerate(keys)}
    groups = summary.groupby(others, sort=False, dropna=False) if others else [((), summary)]
    done = table[table["status"] == "done"] if "status" in table.columns else table
    for n, (_, group) in enumerate(groups):
        if n >= MAX_SERIES:
            ax.text(0.99, 0.01, f"(first {MAX_SERIES} series shown)", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=7)
            break
        group = group[group[f"{metric}_mean"].notna()]
        group = group[group[axis_col].map(_fmt).isin(xpos)]
        if group.empty:
            continue
        group = group.assign(_x=group[axis_col].map(lambda v: xpos[_fmt(v)])).sort_values("_x")
        mean = group[f"{metric}_mean"].to_numpy(float)
        low = group[f"{metric}_ci95_low"].to_numpy(float)
        high = group[f"{metric}_ci95_high"].to_numpy(float)
        yerr = np.vstack([np.nan_to_num(mean - low), np.nan_to_num(high - mean)])
        label = experiment_label(group.iloc[0], others) if others else "all runs"
        offset = (n - 0.5 * (min(len(groups), MAX_SERIES) - 1)) * 0.04
        x = group["_x"].to_numpy(float) + offset
        line = ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=4, label=label)
        runs = done[done["experiment_id"].isin(group["experiment_id"])]
        runs = runs[runs[metric].notna()]
        if not runs.empty:
            rx = runs[axis_col].map(lambda v: xpos.get(_fmt(v), np.nan)).to_numpy(float)
            ax.scatter(rx + offset, runs[metric].to_numpy(float), s=10, alpha=0.4,
                       color=line[0].get_color(), zorder=1)
    ax.set_xticks(range(len(keys)), keys)
    ax.set_xlabel(_short(axis_col))
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_ylim(bottom=0)


def by_parameter(table: pd.DataFrame, summary: pd.DataFrame, axis: str, levels: list[Any],
                 path: Path, energy_reason: str | None = None) -> Path:
    """Energy per output token (p90 latency without energy) and throughput by one parameter.

    One line per setting of the other parameters (mean and 95 % t-interval over cycles); the
    single runs are the faint dots.
    """
    col = f"param.{axis}"
    first = "j_per_output_token" if energy_reason is None else "e2e_p90_s"
    title = f"Effect of {axis} (mean and 95 % CI over cycles; dots are runs)"
    if energy_reason is not None:  # wrapped: a long reason would stretch the figure sideways
        title += "\n" + textwrap.fill(
            f"energy per output token unavailable: {energy_reason}; latency shown instead",
            width=TITLE_WIDTH,
        )
    with plt.rc_context(STYLE):
        fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
        panel(ax_e, table, summary, col, levels, first)
        panel(ax_t, table, summary, col, levels, "output_tokens_per_s")
        handles, labels = ax_t.get_legend_handles_labels()
        if len(handles) > 1:
            fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                       ncol=min(3, len(handles)), frameon=False)
        fig.suptitle(title)
        fig.tight_layout()
        return save(fig, path)


def power_timeline(run_dir: Path, path: Path) -> str | None:
    """Plot a run's power samples by phase; return why it was skipped, or None when drawn."""
    source = run_dir / "timeseries.csv"
    if not source.exists():
        return "no timeseries.csv"
    try:
        samples = pd.read_csv(source)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        return f"timeseries.csv unreadable ({e})"
    if samples.empty or "power_w" not in samples.columns:
        return "no power samples (energy was not measured)"
    samples["power_w"] = pd.to_numeric(samples["power_w"], errors="coerce")
    samples["t_s"] = pd.to_numeric(samples.get("t_s"), errors="coerce")
    samples = samples.dropna(subset=["power_w", "t_s"])
    if samples.empty:
        return "no power samples (energy was not measured)"
    t0 = samples["t_s"].min()
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        for (phase, device), part in samples.groupby(["phase", "device"], sort=False, dropna=False):
            ax.plot(part["t_s"] - t0, part["power_w"], lw=1.2,
                    color=PHASE_COLORS.get(str(phase)), label=f"{phase} ({device})")
        ax.set_xlabel("time since first sample (s)")
        ax.set_ylabel("power (W)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"Power of run {run_dir.name}")
        ax.legend(loc="lower right")
        fig.tight_layout()
        save(fig, path)
    return None


def pareto_plot(found: Front, path: Path) -> Path:
    """All experiments on two metrics, the Pareto front joined and labelled."""
    spec = found.spec
    points = found.points
    params = param_columns(points)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(7.5, 5))
        off = points[~points["on_front"].astype(bool)]
        on = points[points["on_front"].astype(bool)].sort_values("x_value")
        ax.scatter(off["x_value"], off["y_value"], color="tab:gray", label="dominated")
        ax.plot(on["x_value"], on["y_value"], "o-", color="tab:red", label="Pareto front")
        # labels alternate above and below their points, so neighbours do not print over each other
        for i, (_, row) in enumerate(points.sort_values(["x_value", "y_value"]).iterrows()):
            ax.annotate(experiment_label(row, params), (row["x_value"], row["y_value"]),
                        textcoords="offset points", xytext=(5, 4 if i % 2 == 0 else -11),
                        fontsize=7)
        better = {"min": "lower is better", "max": "higher is better"}
        ax.set_xlabel(f"{LABELS.get(spec.x, spec.x)} ({better[spec.x_better]})")
        ax.set_ylabel(f"{LABELS.get(spec.y, spec.y)} ({better[spec.y_better]})")
        ax.set_title(spec.title)
        if found.note:
            # below the axis label (the saved figure's tight bounding box takes it in)
            ax.text(0.0, -0.16, textwrap.fill(found.note, width=120), transform=ax.transAxes,
                    fontsize=7, va="top")
        ax.legend(loc="best")
        fig.tight_layout()
        return save(fig, path)


def settings_curve(table: pd.DataFrame, summary: pd.DataFrame, axis: str, levels: list[Any],
                   found: Front | None, path: Path) -> Path:
    """Energy per output token and p90 latency against a GPU setting, and their Pareto front.

    Left and middle: mean and 95 % interval by the setting (one line per setting of the other
    parameters); right: energy per token against p90 latency, the front joined, each point
    labelled with its setting.
    """
    col = f"param.{axis}"
    with plt.rc_context(STYLE):
        fig, (ax_e, ax_l, ax_p) = plt.subplots(1, 3, figsize=(15, 4.4))
        panel(ax_e, table, summary, col, levels, "j_per_output_token")
        panel(ax_l, table, summary, col, levels, "e2e_p90_s")
        if found is not None and not found.points.empty:
            points = found.points
            on = points[points["on_front"].astype(bool)].sort_values("x_value")
            ax_p.scatter(points["x_value"], points["y_value"], color="tab:gray", label="dominated")
            ax_p.plot(on["x_value"], on["y_value"], "o-", color="tab:red", label="Pareto front")
            for _, row in points.iterrows():
                ax_p.annotate(f"{_short(col)}={_fmt(row[col])}", (row["x_value"], row["y_value"]),
                              textcoords="offset points", xytext=(5, 4), fontsize=7)
            ax_p.legend(loc="best")
        ax_p.set_xlabel(f"{LABELS['e2e_p90_s']} (lower is better)")
        ax_p.set_ylabel(f"{LABELS['j_per_output_token']} (lower is better)")
        ax_p.set_title("Energy vs latency across the setting")
        fig.suptitle(f"Energy per token and latency against {axis} (mean and 95 % CI over cycles)")
        fig.tight_layout()
        return save(fig, path)
