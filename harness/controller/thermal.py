"""Thermal control between runs (host side): wait until the assigned GPUs have cooled down.

Reads the GPUs through the configured NVML library (``harness.devices``: the host's NVML, or
the study's simulated GPUs). Without NVML the record says that the temperature could not be
checked; a temperature is never made up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.devices.host import GpusUnavailable, HostGpus
from harness.devices.library import NvmlLibrary, measures_gpus
from harness.results.schema import GpuLibrary

DEFAULT_POLL_S = 2.0


def cooldown(
    device: str,
    gpus: Sequence[int],
    target_c: float | None,
    timeout_s: float,
    *,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    library: GpuLibrary | None = None,
    nvml: NvmlLibrary | None = None,
) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until every GPU in ``gpus`` is below ``target_c``; say what happened.

    ``gpus`` are host indices in NVML order (as nvidia-smi numbers them), read through
    ``library`` (or an NVML-like ``nvml`` object). Without a target the temperatures are only
    recorded. The record's ``reached`` is True/False after a wait and None when nothing was
    waited for or the temperature could not be read.
    """
    record: dict[str, Any] = {
        "cooldown_to_c": target_c,
        "cooldown_timeout_s": timeout_s if target_c is not None else None,
        "gpus": list(gpus) if measures_gpus(device, library) else [],
        "checked": False,
        "reached": None,
        "waited_s": 0.0,
        "start_temperatures_c": None,
        "end_temperatures_c": None,
        "reason": None,
        "checked_at_unix": time.time(),
    }
    if not measures_gpus(device, library):
        record["reason"] = f"device {device}: no GPU temperature to check"
        return record
    if not gpus:
        record["reason"] = "no GPUs assigned"
        return record
    try:
        host = HostGpus.open(library, nvml=nvml)
    except GpusUnavailable as e:
        what = "cooldown could not be checked" if target_c is not None else "not recorded"
        record["reason"] = f"{e}; GPU temperature {what}"
        return record
    with host:
        try:
            temps = host.temperatures_c(gpus)
        except GpusUnavailable as e:
            record["reason"] = str(e)
            return record
        record["checked"] = True
        record["start_temperatures_c"] = temps
        if target_c is None:
            record["reason"] = "cooldown_to_c is not set; temperatures recorded only"
            record["end_temperatures_c"] = temps
            return record
        _wait(record, host, gpus, target_c, timeout_s, temps, poll_s, sleep, clock)
        return record


def _wait(record: dict[str, Any], host: HostGpus, gpus: Sequence[int], target_c: float,
          timeout_s: float, temps: dict[str, float], poll_s: float,
          sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
    """Poll until every GPU is below ``target_c`` or the timeout passes; fill the record."""
    start = clock()
    while any(t >= target_c for t in temps.values()):
        remaining = timeout_s - (clock() - start)
        if remaining <= 0:
            record["reached"] = False
            record["reason"] = (
                f"still at or above {target_c} °C after {timeout_s:.0f} s "
                "(cooldown_timeout_s); the run starts anyway"
            )
            break
        sleep(min(poll_s, remaining))
        try:
            temps = host.temperatures_c(gpus)
        except GpusUnavailable as e:
            record["reached"] = None
            record["reason"] = f"NVML stopped answering while waiting ({e})"
            break
    else:
        record["reached"] = True
    record["waited_s"] = clock() - start
    record["end_temperatures_c"] = temps


def host_gpu_uuids(
    gpus: Sequence[int], *, library: GpuLibrary | None = None, nvml: NvmlLibrary | None = None
) -> list[str]:
    """UUIDs of host GPUs by NVML index, or [] when NVML cannot be read on the host."""
    if not gpus:
        return []
    try:
        with HostGpus.open(library, nvml=nvml) as host:
            return host.uuids(gpus)
    except GpusUnavailable:
        return []
