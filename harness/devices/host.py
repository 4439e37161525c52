"""The host's view of its GPUs: identities and temperatures through the configured NVML library.

One small interface over an NVML-like library, in the spirit of Zeus's vendor-neutral GPU
class (zeus/device/gpu/common.py): callers ask what they need by NVML index (the order
``nvidia-smi`` and ``execution.gpus`` use) and never see which library answers. Power limits
and clocks (issue 14) are the next methods here; ``local_cpus`` places runs (issue 13).
Vendor errors become ``GpusUnavailable``.
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
