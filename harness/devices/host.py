"""The host's view of its GPUs: identities and temperatures through the configured NVML library.

One small interface over an NVML-like library, in the spirit of Zeus's vendor-neutral GPU
class (zeus/device/gpu/common.py): callers ask what they need by NVML index (the order
``nvidia-smi`` and ``execution.gpus`` use) and never see which library answers: identities, temperatures,
the settings a study may change (power limit, locked clocks; docs/gpu-control.md), and
the CPUs and NUMA nodes near each GPU, where runs are placed (docs/scale.md).
Vendor errors become ``GpusUnavailable`` (``SettingRefused`` when a change is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.devices.affinity import (
    MASK_WORDS,
    PCI_DEVICES,
    mask_bits,
    sysfs_local_cpus,
    sysfs_numa_node,
)
from harness.devices.library import NoLibrary, NvmlLibrary, open_library
from harness.results.schema import GpuLibrary


class GpusUnavailable(Exception):
    """The host's GPUs cannot be read; the message says why."""


class SettingRefused(GpusUnavailable):
    """NVML refused to change a GPU setting; ``code`` is NVML's return code."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


#: NVML return codes (nvml.h) the settings calls are refused with
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
_REFUSALS = {
    NVML_ERROR_INVALID_ARGUMENT: "the value is outside what the GPU allows",
    NVML_ERROR_NOT_SUPPORTED: "this GPU does not support it",
    NVML_ERROR_NO_PERMISSION: "not permitted (changing GPU settings needs root)",
}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class HostGpus:
    """The host's GPUs through one initialised NVML library; a context manager (shutdown at exit)."""

    def __init__(self, nvml: NvmlLibrary) -> None:
        self.nvml = nvml

    @classmethod
    def open(cls, config: GpuLibrary | None = None, *, nvml: NvmlLibrary | None = None) -> HostGpus:
        """Initialise the configured library (or ``nvml``); GpusUnavailable says why it cannot."""
        if nvml is None:
            try:
                nvml = open_library(config)
            except NoLibrary as e:
                raise GpusUnavailable("nvidia-ml-py is not installed on the host") from e
        lib: NvmlLibrary = nvml
        try:
            lib.nvmlInit()
        except lib.NVMLError as e:
            raise GpusUnavailable(f"NVML is not available on the host ({e})") from e
        return cls(lib)

    def __enter__(self) -> HostGpus:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Shut the library down."""
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass

    def _query(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nvml.NVMLError as e:
            raise GpusUnavailable(f"NVML could not read the GPU {what} ({e})") from e

    def count(self) -> int:
        """How many GPUs NVML lists."""
        return int(self._query("count", self.nvml.nvmlDeviceGetCount))

    def uuids(self, indices: Sequence[int]) -> list[str]:
        """UUIDs of GPUs by NVML index."""
        nvml = self.nvml
        return [
            _text(self._query("UUID", lambda i: nvml.nvmlDeviceGetUUID(
                nvml.nvmlDeviceGetHandleByIndex(i)), index))
            for index in indices
        ]

    def temperatures_c(self, indices: Sequence[int]) -> dict[str, float]:
        """Die temperature of GPUs by NVML index, keyed by the index as text."""
        nvml = self.nvml
        return {
            str(index): float(self._query("temperature", lambda i: nvml.nvmlDeviceGetTemperature(
                nvml.nvmlDeviceGetHandleByIndex(i), nvml.NVML_TEMPERATURE_GPU), index))
            for index in indices
        }

    # --- settings: power limit and locked clocks ---------------------------------------------

    def _handle(self, index: int) -> Any:
        return self._query("handle", self.nvml.nvmlDeviceGetHandleByIndex, index)

    def _command(self, what: str, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except self.nvml.NVMLError as e:
            code = getattr(e, "value", None)
            why = _REFUSALS.get(code, str(e)) if isinstance(code, int) else str(e)
            raise SettingRefused(f"NVML refused to {what}: {why} ({e})", code) from e

    def power_limit_w(self, index: int) -> float:
        """The power management limit of GPU ``index``, in watts."""
        mw = self._query("power limit", self.nvml.nvmlDeviceGetPowerManagementLimit,
                         self._handle(index))
        return float(mw) / 1000.0

    def enforced_power_limit_w(self, index: int) -> float:
        """The power limit in force on GPU ``index``, in watts."""
        mw = self._query("enforced power limit", self.nvml.nvmlDeviceGetEnforcedPowerLimit,
                         self._handle(index))
        return float(mw) / 1000.0

    def power_limit_range_w(self, index: int) -> tuple[float, float]:
        """The lowest and highest power limit GPU ``index`` accepts, in watts."""
        low, high = self._query("power limit constraints",
                                self.nvml.nvmlDeviceGetPowerManagementLimitConstraints,
                                self._handle(index))
        return float(low) / 1000.0, float(high) / 1000.0

    def memory_clocks_mhz(self, index: int) -> list[int]:
        """Memory clocks GPU ``index`` supports, in MHz."""
        return sorted(int(c) for c in self._query(
            "supported memory clocks", self.nvml.nvmlDeviceGetSupportedMemoryClocks,
            self._handle(index)))

    def sm_clocks_mhz(self, index: int) -> list[int]:
        """SM clocks GPU ``index`` supports at any of its memory clocks, in MHz."""
        handle = self._handle(index)
        found: set[int] = set()
        for mem in self.memory_clocks_mhz(index):
            found.update(int(c) for c in self._query(
                "supported graphics clocks", self.nvml.nvmlDeviceGetSupportedGraphicsClocks,
                handle, mem))
        return sorted(found)

    def clock_mhz(self, index: int, domain: str) -> int:
        """The current clock of GPU ``index`` in one domain ('sm' or 'memory'), in MHz."""
        kind = self.nvml.NVML_CLOCK_SM if domain == "sm" else self.nvml.NVML_CLOCK_MEM
        return int(self._query(f"{domain} clock", self.nvml.nvmlDeviceGetClockInfo,
                               self._handle(index), kind))

    def set_power_limit_w(self, index: int, watts: float) -> None:
        """Set the power limit of GPU ``index`` (NVML takes milliwatts)."""
        self._command(f"set GPU {index}'s power limit to {watts:g} W",
                      self.nvml.nvmlDeviceSetPowerManagementLimit, self._handle(index),
                      int(round(watts * 1000)))

    def lock_clocks_mhz(self, index: int, domain: str, mhz: int) -> None:
        """Lock one clock domain ('sm' or 'memory') of GPU ``index`` to ``mhz`` (min = max)."""
        fn = (self.nvml.nvmlDeviceSetGpuLockedClocks if domain == "sm"
              else self.nvml.nvmlDeviceSetMemoryLockedClocks)
        self._command(f"lock GPU {index}'s {domain} clock at {mhz} MHz", fn,
                      self._handle(index), int(mhz), int(mhz))

    def reset_clocks(self, index: int, domain: str) -> None:
        """Unlock one clock domain ('sm' or 'memory') of GPU ``index``."""
        fn = (self.nvml.nvmlDeviceResetGpuLockedClocks if domain == "sm"
              else self.nvml.nvmlDeviceResetMemoryLockedClocks)
        self._command(f"reset GPU {index}'s {domain} clock lock", fn, self._handle(index))

    def local_cpus(self, indices: Sequence[int], *, sysfs: Path = PCI_DEVICES) -> list[int] | None:
        """CPUs local to GPUs by NVML index (their union): NVML's affinity, else sysfs; None: unknown."""
        nvml = self.nvml
        found: set[int] = set()
        for index in indices:
            handle = self._query("handle", nvml.nvmlDeviceGetHandleByIndex, index)
            try:
                cpus = mask_bits(nvml.nvmlDeviceGetCpuAffinity(handle, MASK_WORDS))
            except (nvml.NVMLError, AttributeError, TypeError):
                cpus = []
            if not cpus:
                try:
                    bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
                except nvml.NVMLError:
                    return None
                cpus = sysfs_local_cpus(bus_id, sysfs) or []
            if not cpus:
                return None  # one GPU without an answer: the union would mislead
            found.update(cpus)
        return sorted(found) or None

    def numa_nodes(self, indices: Sequence[int], *, sysfs: Path = PCI_DEVICES) -> list[int] | None:
        """NUMA nodes local to GPUs by NVML index (their union): NVML, else sysfs; None: unknown."""
        nvml = self.nvml
        found: set[int] = set()
        for index in indices:
            handle = self._query("handle", nvml.nvmlDeviceGetHandleByIndex, index)
            try:
                nodes = mask_bits(nvml.nvmlDeviceGetMemoryAffinity(
                    handle, MASK_WORDS, nvml.NVML_AFFINITY_SCOPE_NODE))
            except (nvml.NVMLError, AttributeError, TypeError):
                nodes = []
            if not nodes:
                try:
                    bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
                except nvml.NVMLError:
                    return None
                node = sysfs_numa_node(bus_id, sysfs)
                nodes = [] if node is None else [node]
            if not nodes:
                return None
            found.update(nodes)
        return sorted(found) or None
