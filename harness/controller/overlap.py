"""Which runs overlapped a run's measured window: parallel runs share the host's power and heat."""

from __future__ import annotations

import math
from datetime import datetime

from harness.results.schema import ExperimentResult, Manifest, RunRecord


def unix_of(stamp: str | None) -> float | None:
    """Seconds since the epoch of a manifest time (ISO 8601 with a Z); None when absent."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def window_edges(record: RunRecord, result: ExperimentResult | None) -> tuple[float, float] | None:
    """The run's measured window (wall clock), else its whole time in flight; None: unknown."""
    if result is not None:
        t = result.timings
        if t.window_start_unix is not None and t.window_end_unix is not None:
            return t.window_start_unix, t.window_end_unix
    start, end = unix_of(record.started_at), unix_of(record.finished_at)
    if start is None or end is None:
        return None
    return start, end


def overlapping(record: RunRecord, result: ExperimentResult | None,
                manifest: Manifest) -> list[str]:
    """Ids of the other runs in flight at any time during ``record``'s measured window."""
    edges = window_edges(record, result)
    if edges is None:
        return []
    start, end = edges
    found = []
    for other in manifest.runs:
        if other.run_id == record.run_id:
            continue
        began = unix_of(other.started_at)
        if began is None:
            continue
        ended = unix_of(other.finished_at) if other.status != "running" else None
        if began < end and (math.inf if ended is None else ended) > start:
            found.append(other.run_id)
    return found
