"""Warmup: fixed batches, until latency settles, or until power and temperature settle.

docs/methodology.md, section 1, steps 5 and 7. Warmup is excluded from every figure.
"""

from __future__ import annotations

import time

from harness.agent.metrics import coefficient_of_variation, known, ratio
from harness.agent.sensors.base import Sensor, WindowReading
from harness.backends.engine import Engine
from harness.config.experiment import Measurement
from harness.results.schema import Warmup

#: the warmup CV is taken over this many of the latest batches of the same shape
CV_WINDOW = 5


def _shape(batch: list[list[int]]) -> tuple[int, int]:
    return len(batch), max((len(p) for p in batch), default=0)


def run_warmup(
    backend: Engine, work: list[list[list[int]]], m: Measurement, output_tokens: int
) -> Warmup:
    """Fixed warmup batches, or batches until the batch-latency CV falls below a target.

    The CV compares batches of the same shape (size and prompt length), so a smaller last
    batch does not keep the CV high; ``final_cv`` is None with fewer than two such batches.
    """
    start = time.perf_counter()
    by_shape: dict[tuple[int, int], list[float]] = {}
    target = m.warmup_until_cv
    limit = m.warmup_max_batches if target is not None else m.warmup_batches
    final_cv = None
    converged: bool | None = None if target is None else False
    done = 0
    for i in range(limit):
        batch = work[i % len(work)]
        t0 = time.perf_counter()
        backend.generate(batch, output_tokens)
        same = by_shape.setdefault(_shape(batch), [])
        same.append(time.perf_counter() - t0)
        done += 1
        final_cv = coefficient_of_variation(same[-CV_WINDOW:])
        if target is not None and len(same) >= CV_WINDOW:
            if final_cv is not None and final_cv < target:
                converged = True
                break
    return Warmup(
        batches=done,
        duration_s=time.perf_counter() - start,
        final_cv=final_cv,
        target_cv=target,
        converged=converged,
    )


def _end_temperature_c(reading: WindowReading, devices: list[str]) -> float | None:
    """The hottest device's last temperature reading (None when none was read)."""
    last = [t[-1] for t in (known(reading.device_samples(d), "temperature_c") for d in devices) if t]
    return max(last) if last else None


def _settled(powers: list[float | None], temps: list[float | None], m: Measurement) -> bool:
    """The last two steps agree: power within steady_tolerance, temperature within settle_c."""
    if len(powers) < 2 or powers[-1] is None or not powers[-2]:
        return False
    p0, p1 = powers[-2], powers[-1]
    assert p0 is not None and p1 is not None
    if abs(p1 - p0) / p0 > m.steady_tolerance:
        return False
    t0, t1 = temps[-2], temps[-1]
    return t0 is None or t1 is None or abs(t1 - t0) <= m.warmup_settle_c


def settle(
    backend: Engine, sensor: Sensor, work: list[list[list[int]]], m: Measurement,
    output_tokens: int, warm: Warmup,
) -> None:
    """Warm up in steps until power and temperature settle (``warmup_until_steady``).

    Each step runs batches for ``warmup_settle_s`` inside a sensor window; the warmup ends when
    two steps agree (power within steady_tolerance, temperature within warmup_settle_c) or after
    ``warmup_max_s``. Every step is recorded in ``warm``.
    """
    warm.until_steady = m.warmup_until_steady
    if not m.warmup_until_steady:
        return
    if not sensor.available:
        warm.settle_reason = "energy is unavailable, so power cannot be seen to settle"
        return
    start = time.perf_counter()
    batch = 0
    warm.settled = False
    while True:
        backend.synchronize()
        sensor.begin(m.sample_interval_ms)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < m.warmup_settle_s:
            backend.generate(work[batch % len(work)], output_tokens)
            batch += 1
        backend.synchronize()
        reading = sensor.end()
        warm.settle_power_w.append(ratio(reading.total_energy_j, reading.duration_s))
        warm.settle_temperature_c.append(_end_temperature_c(reading, sensor.devices))
        if _settled(warm.settle_power_w, warm.settle_temperature_c, m):
            warm.settled = True
            break
        if time.perf_counter() - start >= m.warmup_max_s:
            warm.settle_reason = f"power or temperature still moved after {m.warmup_max_s:g} s"
            break
    warm.settle_s = time.perf_counter() - start
    warm.batches += batch
    warm.duration_s += warm.settle_s
