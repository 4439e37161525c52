"""Energy sensors: NVML for GPUs (RAPL for the host beside them), RAPL for CPUs, or unavailable."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.agent.sensors.base import Sensor
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.rapl import DEFAULT_POWERCAP_ROOT, open_rapl_sensor
from harness.devices.library import measures_gpus
from harness.results.schema import GpuLibrary


def select_sensor(
    device: str,
    gpu_uuids: Sequence[str],
    *,
    powercap_root: Path = DEFAULT_POWERCAP_ROOT,
    library: GpuLibrary | None = None,
) -> Sensor:
    """The sensor for this run: GPUs through NVML with the host through RAPL, or RAPL alone.

    GPUs are read through NVML and the host's CPU and DRAM through RAPL in the same window;
    cpu runs read RAPL alone; anything else is unavailable, with why. GPUs are measured on
    cuda runs and on every run with simulated GPUs (``library``). They are ``gpu_uuids`` when
    given; otherwise CUDA_VISIBLE_DEVICES (the standard CUDA variable) when set, else every
    GPU NVML can see (in a container: the ones the runtime assigned).
    """
    if measures_gpus(device, library):
        from harness.agent.sensors.composite import CompositeSensor
        from harness.agent.sensors.nvml import open_nvml_sensor

        system = library is None or library.kind == "nvml"
        gpus = open_nvml_sensor(
            gpu_uuids, library=library,
            visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES") if system else None,
        )
        return CompositeSensor(gpus, open_rapl_sensor(powercap_root))
    if device == "cpu":
        return open_rapl_sensor(powercap_root)
    return UnavailableSensor(f"no energy sensor for device {device!r}")


__all__ = ["Sensor", "UnavailableSensor", "select_sensor"]
