"""Device identity: the GPUs the engine computes on must be the GPUs the sensor measures.

Compared by UUID after the model loads (docs/methodology.md, section 1, step 4). NVML writes
``GPU-<uuid>``, CUDA (torch) the bare UUID; both are compared without the prefix, in lower case.
"""

from __future__ import annotations

from typing import Any

from harness.agent.sensors.base import Sensor
from harness.errors import RunFailure
from harness.results.reasons import FailureReason


def normalised(uuid: str) -> str:
    """A GPU UUID without NVML's ``GPU-`` prefix, in lower case."""
    text = uuid.strip().lower()
    return text[4:] if text.startswith("gpu-") else text


def sensor_uuids(sensor: Sensor) -> list[str]:
    """UUIDs of the GPUs the sensor measures, in its order (empty when it names none)."""
    devices = sensor.provenance().get("devices") or []
    return [str(d["uuid"]) for d in devices if isinstance(d, dict) and d.get("uuid")]


def check_devices(engine_uuids: list[str] | None, sensor: Sensor) -> dict[str, Any]:
    """The comparison's record; RunFailure(device_mismatch) when the two sets differ."""
    measured = sensor_uuids(sensor)
    record: dict[str, Any] = {"engine_uuids": engine_uuids, "sensor_uuids": measured}
    if engine_uuids is None:
        return {**record, "verdict": "unknown",
                "reason": "the engine cannot say which GPUs it computes on"}
    if not measured:
        return {**record, "verdict": "unknown", "reason": "the sensor names no GPUs"}
    if {normalised(u) for u in engine_uuids} != {normalised(u) for u in measured}:
        raise RunFailure(
            f"the engine computes on GPUs {', '.join(engine_uuids) or 'none'} but the sensor "
            f"measures GPUs {', '.join(measured)}; the energy would not be the run's "
            "(set CUDA_DEVICE_ORDER=PCI_BUS_ID or pass GPU UUIDs)",
            reason=FailureReason.DEVICE_MISMATCH,
        )
    return {**record, "verdict": "match"}
