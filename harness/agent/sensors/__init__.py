"""Energy sensors: NVML for GPUs, RAPL for CPUs, or unavailable with the reason."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.agent.sensors.base import Sensor
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.rapl import DEFAULT_POWERCAP_ROOT, open_rapl_sensor


def select_sensor(
    device: str,
    gpu_uuids: Sequence[str],
    *,
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
) -> Sensor:
    """The sensor for this run's device: NVML for cuda, RAPL for cpu; else unavailable + why.

    For cuda runs the GPUs are ``gpu_uuids`` when given; otherwise CUDA_VISIBLE_DEVICES (the
    standard CUDA variable) when set, else every GPU NVML can see (in a container: the ones
    the runtime assigned).
    """
    if device == "cuda":
        from harness.agent.sensors.nvml import open_nvml_sensor

        return open_nvml_sensor(
            gpu_uuids, visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")
        )
    if device == "cpu":
        return open_rapl_sensor(powercap_root)
    return UnavailableSensor(f"no energy sensor for device {device!r}")


__all__ = ["Sensor", "UnavailableSensor", "select_sensor"]
