"""What the NVML sensor records about the GPUs it measures (``environment.sensor``).

Read once when the sensor opens; a call a GPU does not support gives null, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.agent.sensors.nvml import Gpu

#: the sensor's tolerant read: ``read(gpu, what, fn, *args)``, None when unsupported
Read = Callable[..., Any]


def text(value: Any) -> str:
    """NVML's strings arrive as bytes or str: always str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def describe(nvml: Any, gpus: list[Gpu], read: Read, selected_by: str) -> dict[str, Any]:
    """Driver, CUDA and NVML versions, and each GPU's identity, limits, modes and clocks."""

    def system(fn_name: str) -> Any:
        try:
            return getattr(nvml, fn_name)()
        except nvml.NVMLError:
            return None

    cuda = system("nvmlSystemGetCudaDriverVersion")
    driver = system("nvmlSystemGetDriverVersion")
    nvml_version = system("nvmlSystemGetNVMLVersion")
    devices = [describe_gpu(nvml, g, read) for g in gpus]
    return {
        "selected_by": selected_by,
        "driver_version": text(driver) if driver is not None else None,
        "cuda_driver_version": f"{cuda // 1000}.{(cuda % 1000) // 10}" if cuda else None,
        "nvml_version": text(nvml_version) if nvml_version is not None else None,
        "devices": devices,
    }

def describe_gpu(nvml: Any, gpu: Gpu, read: Read) -> dict[str, Any]:
    """One GPU's name, UUID, PCI bus id, memory, power limits, modes and clocks."""

    def watts(value: Any) -> float | None:
        return value / 1000.0 if value is not None else None

    def feature(value: Any) -> bool | None:
        return None if value is None else value == nvml.NVML_FEATURE_ENABLED

    def pair(value: Any) -> tuple[Any, Any]:
        return (value[0], value[1]) if value is not None else (None, None)

    mig_current, mig_pending = pair(read(gpu, "mig", nvml.nvmlDeviceGetMigMode))
    ecc_current, ecc_pending = pair(read(gpu, "ecc", nvml.nvmlDeviceGetEccMode))
    memory = read(gpu, "memory", nvml.nvmlDeviceGetMemoryInfo)
    name = read(gpu, "name", nvml.nvmlDeviceGetName)
    pci = read(gpu, "pci", nvml.nvmlDeviceGetPciInfo)
    capability = read(gpu, "capability", nvml.nvmlDeviceGetCudaComputeCapability)
    return {
        "device": gpu.key,
        "nvml_index": gpu.index,
        "uuid": gpu.uuid,
        "name": text(name) if name is not None else None,
        "pci_bus_id": text(pci.busId) if pci is not None else None,
        "compute_capability": f"{capability[0]}.{capability[1]}" if capability else None,
        "memory_total_bytes": int(memory.total) if memory is not None else None,
        "energy_counter": gpu.has_counter,
        "power_limit_w": watts(read(gpu, "enforced_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)),
        "power_management_limit_w": watts(
            read(gpu, "limit", nvml.nvmlDeviceGetPowerManagementLimit)
        ),
        "power_default_limit_w": watts(
            read(gpu, "default_limit", nvml.nvmlDeviceGetPowerManagementDefaultLimit)
        ),
        "persistence_mode": feature(read(gpu, "persistence", nvml.nvmlDeviceGetPersistenceMode)),
        "mig_mode": feature(mig_current),
        "mig_mode_pending": feature(mig_pending),
        "ecc_mode": feature(ecc_current),
        "ecc_mode_pending": feature(ecc_pending),
        "sm_clock_mhz": read(gpu, "sm_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
        "mem_clock_mhz": read(
            gpu, "mem_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM
        ),
        "sm_clock_max_mhz": read(
            gpu, "sm_clock_max", nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM
        ),
        "mem_clock_max_mhz": read(
            gpu, "mem_clock_max", nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_MEM
        ),
        "sm_clock_applications_mhz": read(
            gpu, "sm_clock_app", nvml.nvmlDeviceGetApplicationsClock, nvml.NVML_CLOCK_SM
        ),
        "mem_clock_applications_mhz": read(
            gpu, "mem_clock_app", nvml.nvmlDeviceGetApplicationsClock, nvml.NVML_CLOCK_MEM
        ),
        "temperature_c": read(
            gpu, "temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU
        ),
    }
