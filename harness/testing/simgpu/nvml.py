"""A simulated NVML library: pynvml's functions, constants and errors, answered by simulated GPUs.

``SimulatedNvml`` has the same function names, signatures and return shapes as the part of
pynvml (nvidia-ml-py) the harness calls, and reuses pynvml's ``NVML_*`` constants and
``NVMLError`` classes, so code written against pynvml runs on it unchanged. Each instance is
one process's view of the GPUs:

- in the agent it follows the engine: created with ``engine_uuids``, it subscribes to the
  activity bus (``harness.agent.activity``) and those devices' power follows the engine's
  states; at the last ``nvmlShutdown`` it writes its truth file (``truth.py``);
- on the host it only answers queries and changes settings (``commands.py``), which persist
  in the state folder (``state.py``) for every other instance to see.

Every call sleeps ``call_latency_ms`` first (outside the lock, as NVML calls from two threads
overlap), then answers for the moment it returns.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pynvml

from harness.agent import activity
from harness.agent.activity import Activity
from harness.testing.simgpu.commands import DeviceCommands, Handle, error
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.device import SimDevice
from harness.testing.simgpu.state import SettingsStore, write_json_atomically
from harness.testing.simgpu.truth import truth_data

DRIVER_VERSION = "570.00 (simulated)"
CUDA_DRIVER_VERSION = 12080
#: unsigned "not available" of NVML process structs
_NA = 0xFFFFFFFF


class SimulatedNvml(DeviceCommands):
    """pynvml's interface over simulated GPUs; see the module docstring."""

    def __init__(
        self,
        config: SimulatedGpus,
        *,
        state_dir: Path | None = None,
        truth_file: Path | None = None,
        engine_uuids: Sequence[str] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.truth_file = truth_file
        self._clock = clock
        self._lock = threading.RLock()
        self._inits = 0
        self._created = clock()
        follow = None if engine_uuids is None else set(engine_uuids)
        self._devices = [
            SimDevice(i, config, self._created, follows_engine=(
                follow is not None and (not follow or config.uuid(i) in follow)))
            for i in range(config.count)
        ]
        self._store = SettingsStore(state_dir)
        for index, settings in self._store.read().items():
            if index < len(self._devices):
                self._devices[index].apply(settings, self._created)
        self._subscribed = False
        #: the latest moment any reading was taken for: state changes never land before it,
        #: so a reading once given is never contradicted by the truth
        self._horizon = self._created
        self._follow()

    # --- pynvml's constants and error classes ---------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith(("NVML_", "NVMLError")) or name in ("nvmlFriendlyObject",):
            return getattr(pynvml, name)
        raise AttributeError(f"the simulated NVML has no {name!r}")

    # --- the engine's activity ------------------------------------------------------------

    def _follow(self) -> None:
        if not self._subscribed and any(d.follows_engine for d in self._devices):
            self._subscribed = True
            activity.subscribe(self._on_activity)

    def _on_activity(self, state: Activity, t_s: float) -> None:
        if self.config.work_follows_clock:
            t_s = self._hold_back(t_s)
        with self._lock:
            for device in self._devices:
                if device.follows_engine:
                    device.enter(state, max(t_s, self._horizon))

    def _hold_back(self, t_s: float) -> float:
        """Hold the engine back for the busy time a slower clock would have added; the new now.

        Runs on the thread that published (the engine's), outside the lock: a state the GPUs
        spent at a share ``s`` of full speed lasts ``1 / s`` times as long.
        """
        with self._lock:
            extra = max((max(0.0, t_s - d.entered_s()) * (1.0 / d.speed() - 1.0)
                         for d in self._devices if d.follows_engine and d.busy()), default=0.0)
        if extra <= 0:
            return t_s
        time.sleep(extra)
        return self._clock()

    def close(self) -> None:
        """Stop following the engine (tests that make many instances call this)."""
        if self._subscribed:
            activity.unsubscribe(self._on_activity)
            self._subscribed = False

    # --- the call wrapper -----------------------------------------------------------------

    @contextmanager
    def _api(self) -> Iterator[float]:
        """One NVML call: its latency, the initialised check, settings from other processes."""
        if self.config.call_latency_ms > 0:
            time.sleep(self.config.call_latency_ms / 1000.0)
        with self._lock:
            if self._inits == 0:
                raise error(pynvml.NVML_ERROR_UNINITIALIZED)
            now = self._clock()
            self._horizon = max(self._horizon, now)
            changed = self._store.changed(now)
            if changed is not None:
                for device in self._devices:
                    new = changed.get(device.index)
                    if new is not None and new != device.settings:
                        device.apply(new, now)
            yield now

    def _device(self, handle: Handle) -> SimDevice:
        if not isinstance(handle, Handle) or not 0 <= handle.index < len(self._devices):
            raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._devices[handle.index]

    # --- library --------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        """Initialise (counted: every init needs its shutdown)."""
        if self.config.call_latency_ms > 0:
            time.sleep(self.config.call_latency_ms / 1000.0)
        with self._lock:
            self._inits += 1
        self._follow()

    def nvmlShutdown(self) -> None:
        """Shut down; the last shutdown of an agent's instance writes its truth file."""
        with self._api() as now:
            self._inits -= 1
            last = self._inits == 0
            if last and self.truth_file is not None:
                self._write_truth(now)
        if last:
            self.close()

    def nvmlSystemGetDriverVersion(self) -> str:
        """The (simulated) driver version."""
        with self._api():
            return DRIVER_VERSION

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """The CUDA driver version (1000 x major + 10 x minor)."""
        with self._api():
            return CUDA_DRIVER_VERSION

    def nvmlSystemGetNVMLVersion(self) -> str:
        """The NVML version."""
        with self._api():
            return f"12.{DRIVER_VERSION}"

    def nvmlDeviceGetCount(self) -> int:
        """How many devices there are."""
        with self._api():
            return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Handle:
        """The handle of device ``index``."""
        with self._api():
            return Handle(self._device(Handle(int(index))).index)

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Handle:
        """The handle of the device with this UUID."""
        text = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
        with self._api():
            for device in self._devices:
                if device.uuid == text:
                    return Handle(device.index)
            raise error(pynvml.NVML_ERROR_NOT_FOUND)

    # --- identity -------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, handle: Handle) -> str:
        """The device's UUID."""
        with self._api():
            return self._device(handle).uuid

    def nvmlDeviceGetName(self, handle: Handle) -> str:
        """The product name."""
        with self._api():
            self._device(handle)
            return self.config.name

    def nvmlDeviceGetPciInfo(self, handle: Handle) -> Any:
        """PCI information (bus id 00000000:XX:00.0)."""
        with self._api():
            index = self._device(handle).index
            info = pynvml.nvmlPciInfo_t()
            info.bus = 0x18 + index
            info.busId = f"00000000:{0x18 + index:02X}:00.0".encode()
            return info

    def nvmlDeviceGetCpuAffinity(self, handle: Handle, cpuSetSize: int) -> list[int]:  # noqa: N803
        """CPUs near the device as 64-bit mask words: the host's CPUs split evenly over the devices.

        Like a host whose GPUs hang off its sockets in order (GPU 0 and 1 on the first half of
        the CPUs, with 4 GPUs); with more devices than CPUs, devices share CPUs.
        """
        with self._api():
            index = self._device(handle).index
            cpus = sorted(os.sched_getaffinity(0))
            share = max(1, len(cpus) // len(self._devices))
            first = (index * len(cpus)) // len(self._devices)
            near = cpus[first:first + share] or cpus[-share:]
            words = [0] * max(1, int(cpuSetSize))
            for cpu in near:
                if cpu // 64 < len(words):
                    words[cpu // 64] |= 1 << (cpu % 64)
            return words

    def nvmlDeviceGetMemoryAffinity(self, handle: Handle, nodeSetSize: int,  # noqa: N803
                                    scope: int) -> list[int]:
        """NUMA nodes near the device as 64-bit mask words: node 0 (one memory node)."""
        with self._api():
            self._device(handle)
            return [1] + [0] * (max(1, int(nodeSetSize)) - 1)

    def nvmlDeviceGetCudaComputeCapability(self, handle: Handle) -> tuple[int, int]:
        """9.0, or 6.0 for a board without the energy counter (before Volta)."""
        with self._api():
            self._device(handle)
            return (9, 0) if self.config.energy_counter else (6, 0)

    def nvmlDeviceGetPersistenceMode(self, handle: Handle) -> int:
        """Persistence mode: enabled."""
        with self._api():
            self._device(handle)
            return pynvml.NVML_FEATURE_ENABLED

    def nvmlDeviceGetMigMode(self, device: Handle) -> list[int]:
        """MIG mode (current, pending): disabled."""
        with self._api():
            self._device(device)
            return [pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_DISABLE]

    def nvmlDeviceGetEccMode(self, handle: Handle) -> list[int]:
        """ECC mode (current, pending): enabled."""
        with self._api():
            self._device(handle)
            return [pynvml.NVML_FEATURE_ENABLED, pynvml.NVML_FEATURE_ENABLED]

    # --- energy and power -----------------------------------------------------------------

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Handle) -> int:
        """Energy since the driver loaded, in mJ, as of the counter's last update."""
        with self._api() as now:
            device = self._device(handle)
            if not self.config.energy_counter:
                raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)
            return device.counter_mj(now)

    def nvmlDeviceGetPowerUsage(self, handle: Handle) -> int:
        """Power in mW: the trailing average of what the sensor saw."""
        with self._api() as now:
            return self._device(handle).power_mw(now)

    # --- state ----------------------------------------------------------------------------

    def nvmlDeviceGetTemperature(self, handle: Handle, sensor: int) -> int:
        """Die temperature in degrees C."""
        with self._api() as now:
            device = self._device(handle)
            if sensor != pynvml.NVML_TEMPERATURE_GPU:
                raise error(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return int(round(device.temperature_c(now)))

    def _clock_mhz(self, handle: Handle, kind: int, sm: Callable[[SimDevice], int]) -> int:
        device = self._device(handle)
        if kind in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return sm(device)
        if kind == pynvml.NVML_CLOCK_MEM:
            return device.mem_clock_mhz()
        raise error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetClockInfo(self, handle: Handle, type: int) -> int:  # noqa: A002 - pynvml's name
        """Current clock of one domain, in MHz."""
        with self._api():
            return self._clock_mhz(handle, type, SimDevice.sm_clock_mhz)

    def nvmlDeviceGetMaxClockInfo(self, handle: Handle, type: int) -> int:  # noqa: A002
        """Highest clock of one domain, in MHz."""
        with self._api():
            return self._clock_mhz(handle, type, lambda d: d.config.sm_clock_max_mhz)

    def nvmlDeviceGetApplicationsClock(self, handle: Handle, type: int) -> int:  # noqa: A002
        """Application clock of one domain (the highest), in MHz."""
        with self._api():
            return self._clock_mhz(handle, type, lambda d: d.config.sm_clock_max_mhz)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Handle) -> int:
        """Clock-event reason bits: idle, or the software power cap."""
        with self._api():
            return self._device(handle).event_reasons()

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Handle) -> int:
        """The older name of the clock-event reasons."""
        with self._api():
            return self._device(handle).event_reasons()

    def nvmlDeviceGetUtilizationRates(self, handle: Handle) -> Any:
        """GPU and memory utilisation: 100 % busy while the engine computes, else 0."""
        with self._api():
            busy = self._device(handle).busy()
            util = pynvml.c_nvmlUtilization_t()
            util.gpu = 100 if busy else 0
            util.memory = 50 if busy else 0
            return util

    def nvmlDeviceGetMemoryInfo(self, handle: Handle, version: Any = None) -> Any:
        """Total, used and free memory; used while a model is resident."""
        with self._api():
            device = self._device(handle)
            used = self.config.loaded_memory_bytes if device.loaded() else 0
            memory = pynvml.c_nvmlMemory_v2_t() if version else pynvml.c_nvmlMemory_t()
            if version:
                memory.version = version
            memory.total = self.config.memory_total_bytes
            memory.used = used
            memory.free = self.config.memory_total_bytes - used
            return memory

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Handle) -> list[Any]:
        """The agent's process while a model is resident; NoPermission when lists are hidden."""
        with self._api():
            device = self._device(handle)
            if not self.config.process_list:
                raise error(pynvml.NVML_ERROR_NO_PERMISSION)
            if not (device.follows_engine and device.loaded()):
                return []
            return [pynvml.nvmlFriendlyObject({
                "pid": os.getpid(), "usedGpuMemory": self.config.loaded_memory_bytes,
                "gpuInstanceId": _NA, "computeInstanceId": _NA,
            })]

    # --- the truth ------------------------------------------------------------------------

    def _write_truth(self, now: float) -> None:
        assert self.truth_file is not None
        devices = [
            {
                "index": d.index,
                "uuid": d.uuid,
                "follows_engine": d.follows_engine,
                "segments": [list(s) for s in d.timeline.segments(self._created, now)],
                "states": [list(s) for s in d.states],
            }
            for d in self._devices
        ]
        data = truth_data(self.config, os.getpid(), self._created, now, devices)
        self.truth_file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.truth_file, data)
