"""The simulated NVML's device commands: power limits and locked clocks, and their bounds.

Like real GPUs, a change needs root and ``settings_permitted``; it is stored in the state folder
(``state.py``), so every instance of the library (the controller's, the agent's in a container)
sees it. ``SimulatedNvml`` gets these calls from ``DeviceCommands``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pynvml

from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.device import SimDevice
from harness.testing.simgpu.state import SettingsStore


@dataclass(frozen=True)
class Handle:
    """A device handle (what nvmlDeviceGetHandleBy* return)."""

    index: int


def is_root() -> bool:
    """Whether this process may change GPU settings (root, as NVML requires)."""
    return os.geteuid() == 0


def error(code: int) -> pynvml.NVMLError:
    """The pynvml error for an NVML return code (its subclass, as pynvml raises it)."""
    return pynvml.NVMLError(code)


class DeviceCommands(ABC):
    """Setting and resetting power limits and locked clocks, and what may be set.

    A mixin of SimulatedNvml, which provides the call wrapper and the handle check.
    """

    config: SimulatedGpus
    _store: SettingsStore
    _devices: list[SimDevice]

    @abstractmethod
    def _api(self) -> AbstractContextManager[float]:
        """One NVML call: the library's latency and init check; yields the time it happens at."""

    @abstractmethod
    def _device(self, handle: Handle) -> SimDevice:
        """The simulated device behind ``handle`` (NVML's errors for a bad one)."""

    # --- power limits in force and allowed --------------------------------------------------

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Handle) -> int:
        """The power limit in force, in mW."""
        with self._api():
            return int(round(self._device(handle).power_limit_w() * 1000))

    def nvmlDeviceGetPowerManagementLimit(self, handle: Handle) -> int:
        """The power management limit, in mW (the one in force: nothing else caps it here)."""
        return self.nvmlDeviceGetEnforcedPowerLimit(handle)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: Handle) -> int:
        """The default power limit, in mW."""
        with self._api():
            self._device(handle)
            return int(round(self.config.power_limit_w * 1000))

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: Handle) -> list[int]:
        """The lowest and highest power limit that may be set, in mW."""
        with self._api():
            self._device(handle)
            c = self.config
            return [int(round(c.power_limit_min_w * 1000)), int(round(c.power_limit_max_w * 1000))]

    # --- settings (root and settings_permitted, like real GPUs) ----------------------------

    def _set(self, handle: Handle, now: float, **changes: Any) -> None:
        self._device(handle)
        if not (self.config.settings_permitted and is_root()):
            raise error(pynvml.NVML_ERROR_NO_PERMISSION)
        stored = self._store.update(handle.index, **changes)
        for device in self._devices:
            new = stored.get(device.index)
            if new is not None and new != device.settings:
                device.apply(new, now)

    def nvmlDeviceSetPowerManagementLimit(self, handle: Handle, limit: int) -> None:
        """Set the power limit (mW) within the constraints."""
        with self._api() as now:
            c = self.config
            if not c.power_limit_min_w * 1000 <= limit <= c.power_limit_max_w * 1000:
                self._device(handle)
                raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            self._set(handle, now, power_limit_w=limit / 1000.0)

    def _check_range(self, low: int, high: int, allowed: Sequence[int]) -> None:
        if not self.config.clock_locking:
            raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not min(allowed) <= low <= high <= max(allowed):
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceSetGpuLockedClocks(self, handle: Handle, minGpuClockMHz: int,  # noqa: N803
                                     maxGpuClockMHz: int) -> None:  # noqa: N803
        """Lock the SM clock to a range (MHz)."""
        with self._api() as now:
            self._check_range(minGpuClockMHz, maxGpuClockMHz, self.config.sm_clocks_mhz)
            self._set(handle, now, gpu_locked_mhz=(int(minGpuClockMHz), int(maxGpuClockMHz)))

    def nvmlDeviceResetGpuLockedClocks(self, handle: Handle) -> None:
        """Unlock the SM clock."""
        with self._api() as now:
            self._set(handle, now, gpu_locked_mhz=None)

    def nvmlDeviceSetMemoryLockedClocks(self, handle: Handle, minMemClockMHz: int,  # noqa: N803
                                        maxMemClockMHz: int) -> None:  # noqa: N803
        """Lock the memory clock to a range (MHz)."""
        with self._api() as now:
            self._check_range(minMemClockMHz, maxMemClockMHz, [self.config.mem_clock_mhz])
            self._set(handle, now, mem_locked_mhz=(int(minMemClockMHz), int(maxMemClockMHz)))

    def nvmlDeviceResetMemoryLockedClocks(self, handle: Handle) -> None:
        """Unlock the memory clock."""
        with self._api() as now:
            self._set(handle, now, mem_locked_mhz=None)

    def nvmlDeviceGetSupportedMemoryClocks(self, handle: Handle) -> list[int]:
        """Memory clocks the device supports (MHz)."""
        with self._api():
            self._device(handle)
            return [self.config.mem_clock_mhz]

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle: Handle, memoryClockMHz: int) -> list[int]:  # noqa: N803
        """SM clocks supported at a memory clock (MHz), highest first."""
        with self._api():
            self._device(handle)
            if memoryClockMHz != self.config.mem_clock_mhz:
                raise error(pynvml.NVML_ERROR_NOT_FOUND)
            return sorted(self.config.sm_clocks_mhz, reverse=True)
