"""Thermal control between runs (host side): wait until the assigned GPUs have cooled down.

Uses nvidia-ml-py on the host when it is installed and NVML answers. Without NVML the record
says that the temperature could not be checked; a temperature is never made up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

DEFAULT_POLL_S = 2.0


class _NoNvml(Exception):
    pass


def _open_nvml(nvml: ModuleType | None) -> ModuleType:
    if nvml is None:
        try:
            import pynvml
        except ImportError as e:
            raise _NoNvml("nvidia-ml-py is not installed on the host") from e
        nvml = pynvml
    lib: ModuleType = nvml
    try:
        lib.nvmlInit()
    except lib.NVMLError as e:
        raise _NoNvml(f"NVML is not available on the host ({e})") from e
    return lib


def _temperatures_c(nvml: ModuleType, handles: dict[str, Any]) -> dict[str, float]:
    return {
        gpu: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))
        for gpu, h in handles.items()
    }


def cooldown(
    device: str,
    gpus: Sequence[int],
    target_c: float | None,
    timeout_s: float,
    *,
    poll_s: float = DEFAULT_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    nvml: ModuleType | None = None,
) -> dict[str, Any]:
    """Wait (up to ``timeout_s``) until every GPU in ``gpus`` is below ``target_c``; say what happened.

    ``gpus`` are host indices in NVML order (as nvidia-smi numbers them). Without a target the
    temperatures are only recorded. The record's ``reached`` is True/False after a wait and
    None when nothing was waited for or the temperature could not be read.
    """
    record: dict[str, Any] = {
        "cooldown_to_c": target_c,
        "cooldown_timeout_s": timeout_s if target_c is not None else None,
        "gpus": list(gpus) if device == "cuda" else [],
        "checked": False,
        "reached": None,
        "waited_s": 0.0,
        "start_temperatures_c": None,
        "end_temperatures_c": None,
        "reason": None,
        "checked_at_unix": time.time(),
    }
    if device != "cuda":
        record["reason"] = f"device {device}: no GPU temperature to check"
        return record
    if not gpus:
        record["reason"] = "no GPUs assigned"
        return record
    try:
        lib = _open_nvml(nvml)
    except _NoNvml as e:
        what = "cooldown could not be checked" if target_c is not None else "not recorded"
        record["reason"] = f"{e}; GPU temperature {what}"
        return record
    try:
        try:
            handles = {str(i): lib.nvmlDeviceGetHandleByIndex(i) for i in gpus}
            temps = _temperatures_c(lib, handles)
        except lib.NVMLError as e:
            record["reason"] = f"NVML could not read the GPU temperature ({e})"
            return record
        record["checked"] = True
        record["start_temperatures_c"] = temps
        if target_c is None:
            record["reason"] = "cooldown_to_c is not set; temperatures recorded only"
            record["end_temperatures_c"] = temps
            return record
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
                temps = _temperatures_c(lib, handles)
            except lib.NVMLError as e:
                record["reached"] = None
                record["reason"] = f"NVML stopped answering while waiting ({e})"
                break
        else:
            record["reached"] = True
        record["waited_s"] = clock() - start
        record["end_temperatures_c"] = temps
        return record
    finally:
        try:
            lib.nvmlShutdown()
        except lib.NVMLError:
            pass


def host_gpu_uuids(gpus: Sequence[int], *, nvml: ModuleType | None = None) -> list[str]:
    """UUIDs of host GPUs by NVML index, or [] when NVML cannot be read on the host."""
    if not gpus:
        return []
    try:
        lib = _open_nvml(nvml)
    except _NoNvml:
        return []
    try:
        return [str(lib.nvmlDeviceGetUUID(lib.nvmlDeviceGetHandleByIndex(i))) for i in gpus]
    except lib.NVMLError:
        return []
    finally:
        try:
            lib.nvmlShutdown()
        except lib.NVMLError:
            pass
