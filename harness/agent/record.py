"""What both protocols (offline and serving) record the same way: provenance, warnings, result.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.agent import environment, validity
from harness.agent.sensors.base import Sensor, WindowReading
from harness.results.io import atomic_write_json
from harness.results.schema import ExperimentResult, RunSpec, Warning_


def run_environment(
    spec: RunSpec, sensor: Sensor, device_check: dict[str, Any], prompts_sha256: str | None
) -> dict[str, Any]:
    """The run's environment: the machine, the sensor, the image, the runner, seeds, prompts."""
    return environment.capture(
        {
            "sensor": sensor.provenance(),
            "image": spec.image.model_dump() if spec.image else None,
            "runner": spec.runner,
            "gpu_uuids_requested": list(spec.gpu_uuids),
            "device_check": device_check,
            "seeds": {"workload": spec.experiment.workload.seed},
            "prompts_sha256": prompts_sha256,
        }
    )


def write_result(
    out_dir: Path, result: ExperimentResult, phases: Mapping[str, WindowReading], sensor: Sensor,
    extra: list[Warning_] | None = None,
) -> ExperimentResult:
    """Add each phase's window edges and every warning, then write result.json last.

    ``extra`` warnings come from the caller; the file is written atomically.
    """
    result.energy.phase_edges_s = {
        p: (r.start_s, r.end_s) for p, r in phases.items()
        if r.start_s is not None and r.end_s is not None
    }
    result.warnings = validity.check(result, phases, sensor) + list(extra or [])
    atomic_write_json(out_dir / "result.json", result)
    return result
