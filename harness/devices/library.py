"""The one factory of NVML libraries: pynvml (the system's NVML) or simulated GPUs, by configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.config.study import Execution
from harness.results.energy import EnergyMethod
from harness.results.schema import GpuLibrary

#: pynvml's module or a SimulatedNvml: the same functions, constants and error classes
NvmlLibrary = Any

SYSTEM = GpuLibrary()
#: where a study keeps its simulated GPUs' settings (power limits, locked clocks)
STATE_FOLDER = "simulated-gpus"


class NoLibrary(Exception):
    """The configured NVML library cannot be loaded here; the message says why."""


def measures_gpus(device: str, config: GpuLibrary | None) -> bool:
    """Whether a run on ``device`` measures GPUs: cuda runs, and every run on simulated GPUs."""
    return device == "cuda" or (config is not None and config.kind == "simulated")


def open_library(
    config: GpuLibrary | None = None, *, engine_uuids: Sequence[str] | None = None
) -> NvmlLibrary:
    """The NVML library ``config`` names, not yet initialised (call nvmlInit on it).

    ``engine_uuids`` is for the agent: the GPUs its engine computes on. Simulated GPUs then
    follow the engine's activity (all of them when it is empty) and write their truth file at
    the last nvmlShutdown; the host leaves it None.
    """
    config = config or SYSTEM
    if config.kind == "simulated":
        from harness.testing.simgpu.nvml import SimulatedNvml

        assert config.simulated is not None  # the model's validator
        return SimulatedNvml(
            config.simulated,
            state_dir=Path(config.state_dir) if config.state_dir else None,
            truth_file=Path(config.truth_file) if config.truth_file and engine_uuids is not None
            else None,
            engine_uuids=engine_uuids,
        )
    try:
        import pynvml
    except ImportError as e:
        raise NoLibrary("no NVML: the nvidia-ml-py package is not installed here") from e
    return pynvml


def energy_label(config: GpuLibrary | None) -> EnergyMethod | None:
    """The energy method every figure read through this library carries, if one is fixed."""
    return "simulated" if config is not None and config.kind == "simulated" else None


def study_library(execution: Execution, study_dir: Path | None) -> GpuLibrary:
    """The library a study reads GPUs through: the system's, or its simulated GPUs.

    Simulated GPUs keep their settings in STUDY_DIR/simulated-gpus (in memory without a
    folder: checks before a study folder exists).
    """
    if execution.simulated_gpus is None:
        return SYSTEM
    return GpuLibrary(kind="simulated", simulated=execution.simulated_gpus,
                      state_dir=str((study_dir / STATE_FOLDER).resolve())
                      if study_dir is not None else None)


def run_library(host: GpuLibrary, run_dir: Path) -> GpuLibrary:
    """The library of one run, host paths: the study's, with the run's truth file for simulated GPUs."""
    if host.kind != "simulated":
        return host
    from harness.testing.simgpu.truth import TRUTH_FILE

    return host.model_copy(update={"truth_file": str((run_dir / TRUTH_FILE).resolve())})


def init_reason(nvml: ModuleType, error: Exception) -> str:
    """Why NVML could not be initialised, in words a user can act on."""
    if isinstance(error, nvml.NVMLError_LibraryNotFound):
        return (
            "no NVML: libnvidia-ml.so was not found (no NVIDIA driver is visible here; "
            "start the container with the NVIDIA runtime and a GPU device request)"
        )
    if isinstance(error, nvml.NVMLError_DriverNotLoaded):
        return "no GPU: NVML reports that the NVIDIA driver is not loaded"
    if isinstance(error, nvml.NVMLError_NoPermission):
        return "permission denied: NVML refused to initialise for this user"
    return f"NVML could not be initialised: {error}"
