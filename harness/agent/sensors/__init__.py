"""Energy sensors: NVML for GPUs, RAPL for CPUs, or unavailable with the reason."""

from __future__ import annotations

from harness.agent.sensors.base import Sensor
from harness.agent.sensors.null import UnavailableSensor


def select_sensor(device: str, gpu_uuids: list[str]) -> Sensor:
    """The best sensor for this run's device, or an unavailable one with the reason."""
    if device == "cuda":
        return UnavailableSensor("NVML energy reading is not available in this build")
    return UnavailableSensor("RAPL energy reading is not available in this build")
