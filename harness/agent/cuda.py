"""Is an NVIDIA GPU visible here? Asked of the CUDA driver itself, before any engine loads.

The driver library (libcuda.so.1) comes from the host: the NVIDIA container toolkit mounts it
into a container that was given GPUs, and a CUDA image carries only the runtime. So a cuda run
without a GPU is refused here, with one reason (``no_gpu``), instead of failing later inside
whichever engine touches the device first.

The driver is asked in a child process (``python -m harness.agent.cuda``): a process that has
initialised CUDA cannot fork children that use it, and engines fork theirs.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from harness.errors import RunFailure
from harness.results.reasons import FailureReason

DRIVER_LIBRARY = "libcuda.so.1"
#: CUresult values named in messages (cuda.h)
_NO_DEVICE = 100
_INSUFFICIENT_DRIVER = 35
_ERRORS = {_NO_DEVICE: "CUDA_ERROR_NO_DEVICE", _INSUFFICIENT_DRIVER: "CUDA_ERROR_INSUFFICIENT_DRIVER",
           3: "CUDA_ERROR_NOT_INITIALIZED", 999: "CUDA_ERROR_UNKNOWN"}


@dataclass(frozen=True)
class CudaDriver:
    """What the CUDA driver reports: the CUDA version it supports and the devices it sees."""

    version: str | None
    devices: int
    problem: str | None = None

    @property
    def usable(self) -> bool:
        """True when the driver loads and sees at least one device."""
        return self.problem is None and self.devices > 0


def cuda_version_text(value: int) -> str:
    """The driver API's integer version (12040) as ``12.4``."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def probe(load: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> CudaDriver:
    """Load the CUDA driver, initialise it and count devices; never raises."""
    try:
        lib = load(DRIVER_LIBRARY)
    except OSError as e:
        return CudaDriver(None, 0, f"the NVIDIA driver library {DRIVER_LIBRARY} is not here ({e})")
    version = ctypes.c_int(0)
    known = None
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
        known = cuda_version_text(version.value)
    status = lib.cuInit(0)
    if status != 0:
        name = _ERRORS.get(status, f"CUresult {status}")
        return CudaDriver(known, 0, f"the CUDA driver did not initialise ({name})")
    count = ctypes.c_int(0)
    status = lib.cuDeviceGetCount(ctypes.byref(count))
    if status != 0:
        return CudaDriver(known, 0, f"cuDeviceGetCount failed (CUresult {status})")
    return CudaDriver(known, count.value, None if count.value > 0 else "the driver sees no device")


def probe_in_child(timeout_s: float = 120.0) -> CudaDriver:
    """``probe()`` in a child process, so that this process never initialises CUDA."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "harness.agent.cuda"],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        return CudaDriver(**json.loads(out.stdout.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, IndexError) as e:
        return CudaDriver(None, 0, f"the CUDA driver probe failed ({type(e).__name__}: {e})")


def require_gpu(device: str, driver: CudaDriver | None = None) -> CudaDriver | None:
    """Refuse a cuda run when no NVIDIA GPU is visible (RunFailure, reason no_gpu)."""
    if device != "cuda":
        return None
    found = driver if driver is not None else probe_in_child()
    if found.usable:
        return found
    visible = os.environ.get("NVIDIA_VISIBLE_DEVICES") or os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = ("run it on a GPU host; in a container the GPUs must be passed through by the NVIDIA "
            "container toolkit (docker run --gpus, which the harness's docker runner does)")
    seen = f" (visible devices: {visible})" if visible else ""
    raise RunFailure(
        f"no NVIDIA GPU visible: {found.problem}{seen}; this run asks for device cuda, {hint}",
        reason=FailureReason.NO_GPU,
    )


if __name__ == "__main__":
    print(json.dumps(asdict(probe())))
