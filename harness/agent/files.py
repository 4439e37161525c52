"""The run's files beside result.json: requests.jsonl and timeseries.csv."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.agent.sensors.base import WindowReading
from harness.agent.window import Window
from harness.results.io import atomic_write_text

TIMESERIES_COLUMNS = [
    "phase", "t_s", "device", "power_w", "energy_j", "temperature_c", "sm_clock_mhz",
    "mem_clock_mhz", "memory_used_bytes", "utilization_gpu_pct", "throttle_reasons", "tick",
]
"""timeseries.csv: t_s from the phase's start; energy_j is the energy since the phase began;
throttle_reasons is NVML's clock-event bit mask; empty cells are unknown."""


def write_requests(path: Path, window: Window) -> None:
    """One JSON line per request of the window (``arrivals``: distinct token arrival times)."""
    write_jsonl(path, [
        {
            "iteration": iteration,
            "batch": batch,
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "arrivals": len(r.arrivals_s),
            "ttft_s": r.ttft_s,
            "tpot_s": r.tpot_s,
            "e2e_s": r.e2e_s,
            "itl_s": r.itl_s,
        }
        for iteration, batch, r in window.requests
    ])


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """One compact JSON line per record, written atomically."""
    lines = [json.dumps(r, separators=(",", ":")) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def write_timeseries(path: Path, phases: dict[str, WindowReading]) -> None:
    """Every sample of every measured phase, one row per device and sample."""
    rows = []
    for phase, reading in phases.items():
        for sample in reading.samples + (reading.host.samples if reading.host else []):
            rows.append({"phase": phase, **{k: sample.get(k) for k in TIMESERIES_COLUMNS[1:]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TIMESERIES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
