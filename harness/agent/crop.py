"""The part of a measured window between two moments inside it, with its energy's edge error.

Serving mode measures the whole load in one sensor window and counts only its steady part
(docs/serving.md, section 4): the steady window's edges fall between the sampler's reads of
the energy counter. Each device's energy at an edge is interpolated linearly between the two
reads around it (the window's own edge reads count as reads at 0 and at its end). The counter
only grows, so the true value lies between those two reads: the interpolated value is off by
at most ``(E_after - E_before) x max(f, 1 - f)``, ``f`` the edge's place between them; that
half-width, with the uncertainty of where the edge lies on the sensor's clock, is recorded per
device (``WindowReading.edge_uncertainty_j``) and enters the energy's budget as the rectangular
term ``window_edges`` (harness.agent.uncertainty). Without counter values the power readings
are integrated over the part (trapezoid, the edges' power interpolated), as for a whole window.
A host part (CPU and DRAM beside the GPUs) is cropped to the same moments.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from harness.agent.sensors.base import WindowReading, trapezoid_energy_j
from harness.agent.uncertainty import reads_counter


def _interpolate(points: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """The value at ``t`` between sorted (t, value) points, and its bound for a growing value."""
    times = [p[0] for p in points]
    i = bisect.bisect_right(times, t)
    if i <= 0:
        return points[0][1], 0.0
    if i >= len(points):
        return points[-1][1], 0.0
    (t0, v0), (t1, v1) = points[i - 1], points[i]
    if t1 <= t0 or t == t0:
        return v0, 0.0
    f = (t - t0) / (t1 - t0)
    return v0 + f * (v1 - v0), abs(v1 - v0) * max(f, 1 - f)


def _counter_points(reading: WindowReading, dev: str) -> list[tuple[float, float]] | None:
    """The counter's energy since the window began at every read, edges included."""
    total = reading.energy_j.get(dev)
    if total is None or not reads_counter(reading, dev):
        return None
    points = {0.0: 0.0, reading.duration_s: total}
    for row in reading.device_samples(dev):
        if row.get("energy_j") is not None and row.get("t_s") is not None:
            t = float(row["t_s"])
            if 0.0 < t < reading.duration_s:
                points[t] = float(row["energy_j"])
    return sorted(points.items())


def _power_points(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    return sorted((float(r["t_s"]), float(r["power_w"])) for r in rows
                  if r.get("power_w") is not None and r.get("t_s") is not None)


def _integrated(rows: list[dict[str, Any]], start_s: float, end_s: float) -> float | None:
    """Trapezoid energy of the power readings over the part, edge power interpolated."""
    points = _power_points(rows)
    if len(points) < 2:
        return None
    inside = [(t, p) for t, p in points if start_s < t < end_s]
    edges = [(start_s, _interpolate(points, start_s)[0]), (end_s, _interpolate(points, end_s)[0])]
    return trapezoid_energy_j(sorted(inside + edges))


def crop(reading: WindowReading, start_s: float, end_s: float, clock_s: float = 0.0) -> WindowReading:
    """The window's part from ``start_s`` to ``end_s`` (seconds from its start).

    ``clock_s`` bounds how far the part's edges may lie from where they are put on the
    sensor's clock (the moments were read on the same clock, a few calls apart); it adds mean
    power x ``clock_s`` to each edge's half-width.
    """
    start_s = max(0.0, start_s)
    end_s = min(reading.duration_s, end_s)
    duration = max(0.0, end_s - start_s)
    part = WindowReading(
        method=reading.method, duration_s=duration, energy_j={}, methods=dict(reading.methods),
        readouts=dict(reading.readouts),
        notes=[*reading.notes, f"cropped to {start_s:.3f}-{end_s:.3f} s of a "
               f"{reading.duration_s:.3f} s window"],
        gpu_processes=dict(reading.gpu_processes), power_limits_w=dict(reading.power_limits_w),
        counter_resets=list(reading.counter_resets), counter_stalled=list(reading.counter_stalled),
        sampler_cpu_s=(reading.sampler_cpu_s * duration / reading.duration_s
                       if reading.sampler_cpu_s is not None and reading.duration_s > 0 else None),
    )
    if reading.start_s is not None:  # the part's edges on the sensor's clock (phase_edges_s)
        part.start_s, part.end_s = reading.start_s + start_s, reading.start_s + end_s
    devices = list(reading.energy_j) or sorted({str(s.get("device")) for s in reading.samples})
    for dev in devices:
        rows = reading.device_samples(dev)
        counter = _counter_points(reading, dev)
        base = 0.0
        if counter is not None:
            (e0, h0), (e1, h1) = _interpolate(counter, start_s), _interpolate(counter, end_s)
            base = e0
            mean_w = (reading.energy_j[dev] or 0.0) / reading.duration_s if reading.duration_s else 0.0
            part.energy_j[dev] = e1 - e0
            part.edge_uncertainty_j[dev] = math.hypot(h0 + mean_w * clock_s, h1 + mean_w * clock_s)
        elif reading.energy_j.get(dev) is not None:
            part.energy_j[dev] = _integrated(rows, start_s, end_s)
        else:
            part.energy_j[dev] = None
        for row in rows:
            t = row.get("t_s")
            if t is not None and start_s <= float(t) <= end_s:
                moved = dict(row, t_s=float(t) - start_s)
                if row.get("energy_j") is not None and counter is not None:
                    moved["energy_j"] = float(row["energy_j"]) - base
                part.samples.append(moved)
    if reading.host is not None:  # the host's CPU and DRAM over the same part (its own clock)
        offset = (reading.start_s - reading.host.start_s
                  if reading.start_s is not None and reading.host.start_s is not None else 0.0)
        part.host = crop(reading.host, start_s + offset, end_s + offset, clock_s)
    return part
