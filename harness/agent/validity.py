"""Validity checks on a finished window; each failed check is a named warning."""

from __future__ import annotations

from harness.agent.sensors.base import Sensor, WindowReading
from harness.results.schema import ExperimentResult, Warning_

MIN_SAMPLES = 10


def check(result: ExperimentResult, reading: WindowReading, sensor: Sensor) -> list[Warning_]:
    """Every validity warning that applies to this result."""
    warnings: list[Warning_] = []
    m = result.experiment.measurement
    if result.timings.window_s < m.min_window_s:
        warnings.append(
            Warning_(
                code="window_too_short",
                message=f"measured window {result.timings.window_s:.2f} s is shorter than "
                f"min_window_s {m.min_window_s} s",
            )
        )
    if sensor.available and len(reading.samples) < MIN_SAMPLES:
        warnings.append(
            Warning_(
                code="too_few_samples",
                message=f"{len(reading.samples)} power samples in the window, fewer than "
                f"{MIN_SAMPLES}",
            )
        )
    return warnings
