"""NVML sensor: GPU energy counters at window edges and a sampled timeline.

Energy over a window is the difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since
the driver loaded, Volta and newer) read at both edges, right after the caller synchronised
the device. A GPU without that counter, a counter that went backwards (reset) or one that did
not advance is measured instead by trapezoid integration of the sampled power, and the
window's method says so (``nvml_power_integration``; ``readout`` says which per device). A
sampler thread records power, the counter, temperature, clocks, memory, utilisation and
clock-event (throttle) reasons every ``interval_ms``, each device's row timed at its own power
read; it sleeps between samples and is stopped before the closing counter reads, so no sample
can fall between them.

The library is whatever ``harness.devices`` hands in (pynvml, or simulated GPUs, whose
figures then carry the label ``simulated``); nothing here asks which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from harness.agent.sensors.base import Sampler, Sensor, WindowReading, trapezoid_energy_j
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.nvml_provenance import describe, text
from harness.devices.library import NoLibrary, energy_label, init_reason, open_library
from harness.results.energy import EnergyMethod, Readout
from harness.results.schema import GpuLibrary

#: the method of a device's energy by what was read, when no label is handed in
_METHODS: dict[Readout, EnergyMethod] = {
    "counter": "nvml_counter", "power_integration": "nvml_power_integration",
    "mixed": "nvml_power_integration",
}


class NoDevices(Exception):
    """The run's GPUs cannot be matched to NVML devices; the message says why."""


@dataclass
class Gpu:
    """One measured GPU: its NVML handle and the state of the current window."""

    key: str
    index: int
    uuid: str
    handle: Any
    has_counter: bool = False
    unsupported: set[str] = field(default_factory=set)
    start_mj: int | None = None
    raw_mj: list[int] = field(default_factory=list)
    #: compute processes seen at the window edges; None when the list could not be read
    pids: set[int] | None = field(default_factory=set)
    pids_unknown: str | None = None


def select_gpus(
    nvml: ModuleType, gpu_uuids: Sequence[str], visible_devices: str | None
) -> tuple[list[Gpu], str]:
    """Match the run's GPUs to NVML handles by UUID; return them and how they were chosen.

    With ``gpu_uuids`` given, each must be an NVML device (CUDA_VISIBLE_DEVICES inside a
    container renumbers devices, UUIDs do not change). Without, CUDA_VISIBLE_DEVICES is
    honoured when set (UUIDs or NVML indices), else every NVML device visible is measured.
    """
    count = nvml.nvmlDeviceGetCount()
    if count == 0:
        raise NoDevices("no GPU: NVML sees no devices")
    found: list[tuple[int, Any, str]] = []
    for index in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        found.append((index, handle, text(nvml.nvmlDeviceGetUUID(handle))))
    seen = ", ".join(uuid for _, _, uuid in found)

    def by_uuid(wanted: str) -> tuple[int, Any, str]:
        if wanted.startswith("MIG-"):
            raise NoDevices(
                f"{wanted} is a MIG instance: NVML has no energy counter per MIG instance"
            )
        matches = [f for f in found if f[2] == wanted or f[2].startswith(wanted)]
        if len(matches) != 1:
            raise NoDevices(f"GPU {wanted} is not among the NVML devices visible here ({seen})")
        return matches[0]

    if gpu_uuids:
        chosen = [by_uuid(u) for u in gpu_uuids]
        how = "gpu_uuids from the run spec"
    elif visible_devices is not None and visible_devices.strip() != "":
        chosen = []
        for entry in (e.strip() for e in visible_devices.split(",")):
            if entry.isdigit():
                if int(entry) >= count:
                    raise NoDevices(
                        f"CUDA_VISIBLE_DEVICES names GPU {entry}, NVML sees {count} devices"
                    )
                chosen.append(found[int(entry)])
            elif entry:
                chosen.append(by_uuid(entry))
        how = "CUDA_VISIBLE_DEVICES (indices read in NVML/PCI order)"
    elif visible_devices is not None:
        raise NoDevices("no GPU: CUDA_VISIBLE_DEVICES is empty")
    else:
        chosen = found
        how = "all NVML devices visible"
    if len({uuid for _, _, uuid in chosen}) != len(chosen):
        raise NoDevices("the run names the same GPU twice")
    gpus = [Gpu(key=f"gpu{n}", index=i, uuid=u, handle=h) for n, (i, h, u) in enumerate(chosen)]
    return gpus, how


class NvmlSensor(Sensor):
    """Energy of the run's GPUs from NVML; see the module docstring for the method."""

    def __init__(
        self,
        nvml: ModuleType,
        gpus: list[Gpu],
        selected_by: str,
        *,
        clock: Callable[[], float] = time.perf_counter,
        label: EnergyMethod | None = None,
    ) -> None:
        self._nvml = nvml
        self._gpus = gpus
        self._clock = clock
        #: the method every figure carries whatever was read (simulated GPUs: "simulated")
        self._label = label
        self._closed = False
        self._sampler: Sampler | None = None
        self._rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        for gpu in gpus:
            gpu.has_counter = self._counter_mj(gpu) is not None
        self.method = label or (
            "nvml_counter" if all(g.has_counter for g in gpus) else "nvml_power_integration"
        )
        self.reason = None
        self._static = describe(nvml, gpus, self._read, selected_by)

    @property
    def devices(self) -> list[str]:
        """Result names of the measured GPUs (gpu0, gpu1, ... in run order)."""
        return [g.key for g in self._gpus]

    # --- reading one value, tolerating what a GPU does not support -------------------------

    def _read(self, gpu: Gpu, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        if what in gpu.unsupported:
            return None
        try:
            return fn(gpu.handle, *args)
        except self._nvml.NVMLError_NotSupported:
            gpu.unsupported.add(what)
        except self._nvml.NVMLError_FunctionNotFound:
            gpu.unsupported.add(what)
        except self._nvml.NVMLError:
            pass
        return None

    def _counter_mj(self, gpu: Gpu) -> int | None:
        value = self._read(gpu, "energy", self._nvml.nvmlDeviceGetTotalEnergyConsumption)
        return int(value) if value is not None else None

    def _throttle(self, gpu: Gpu) -> int | None:
        """Clock-event reasons; older drivers only have the ...ThrottleReasons call."""
        nvml = self._nvml
        newer = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if newer is not None and "event_reasons" not in gpu.unsupported:
            value = self._read(gpu, "event_reasons", newer)
            if value is not None:
                return int(value)
            if "event_reasons" not in gpu.unsupported:
                return None  # a transient error, not a missing call
        value = self._read(gpu, "throttle_reasons", nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        return int(value) if value is not None else None

    def _see_pids(self, gpu: Gpu) -> None:
        """Add the compute processes NVML lists now; an unreadable list makes them unknown."""
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle)
        except self._nvml.NVMLError as e:
            gpu.pids = None
            gpu.pids_unknown = gpu.pids_unknown or str(e)
            return
        if gpu.pids is not None:
            gpu.pids |= {int(p.pid) for p in procs or []}

    def _sample(self, tick: int) -> None:
        for gpu in self._gpus:
            self._rows.append(self._sample_gpu(tick, gpu))

    def _sample_gpu(self, tick: int, gpu: Gpu) -> dict[str, Any]:
        """One device's row, timed at the middle of its own power read."""
        nvml = self._nvml
        raw = self._counter_mj(gpu) if gpu.has_counter else None
        if raw is not None:
            gpu.raw_mj.append(raw)
        before = self._clock()
        power_mw = self._read(gpu, "power", nvml.nvmlDeviceGetPowerUsage)
        t_s = (before + self._clock()) / 2.0 - self._t0
        memory = self._read(gpu, "memory", nvml.nvmlDeviceGetMemoryInfo)
        util = self._read(gpu, "utilization", nvml.nvmlDeviceGetUtilizationRates)
        return {
            "tick": tick,
            "t_s": t_s,
            "device": gpu.key,
            "power_w": power_mw / 1000.0 if power_mw is not None else None,
            "energy_j": (
                (raw - gpu.start_mj) / 1000.0
                if raw is not None and gpu.start_mj is not None
                else None
            ),
            "temperature_c": self._read(
                gpu, "temperature", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU
            ),
            "sm_clock_mhz": self._read(
                gpu, "sm_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM
            ),
            "mem_clock_mhz": self._read(
                gpu, "mem_clock", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM
            ),
            "memory_used_bytes": int(memory.used) if memory is not None else None,
            "utilization_gpu_pct": int(util.gpu) if util is not None else None,
            "throttle_reasons": self._throttle(gpu),
        }

    # --- the window -------------------------------------------------------------------------

    def begin(self, interval_ms: int) -> None:
        """Read every GPU's energy counter, then sample every ``interval_ms`` on a thread."""
        self._rows = []
        for gpu in self._gpus:
            gpu.raw_mj = []
            gpu.pids, gpu.pids_unknown = set(), None
        self._t0 = self._clock()
        for gpu in self._gpus:
            gpu.start_mj = self._counter_mj(gpu) if gpu.has_counter else None
        for gpu in self._gpus:
            self._see_pids(gpu)
        self._sampler = Sampler(self._sample, interval_ms, clock=self._clock, name="nvml-sampler")
        self._sampler.start()

    def end(self) -> WindowReading:
        """Stop sampling, then read the counters at the window's end and compute each GPU's energy.

        The sampler is stopped first: a sample still in flight while the closing counters are
        read could see a later counter value than the closing read and look like a reset.
        """
        sampler = self._sampler
        if sampler is None:
            raise RuntimeError("end() called without begin()")
        next_tick = sampler.stop()
        self._sampler = None
        in_window = {g.key: len(g.raw_mj) for g in self._gpus}
        end_mj = {g.key: (self._counter_mj(g) if g.has_counter else None) for g in self._gpus}
        end = self._clock()
        self._sample(next_tick)  # a last sample, so integration covers the whole window
        notes: list[str] = []
        if sampler.error is not None:
            notes.append(f"the sampler stopped early: {sampler.error!r}")
        reading = WindowReading(
            method=self.method,
            duration_s=end - self._t0,
            energy_j={},
            samples=list(self._rows),
            notes=notes,
            sampler_cpu_s=sampler.cpu_s,
            sampler_missed_ticks=sampler.missed_ticks,
            start_s=self._t0,
            end_s=end,
        )
        for gpu in self._gpus:
            self._see_pids(gpu)
            reading.gpu_processes[gpu.key] = sorted(gpu.pids) if gpu.pids is not None else None
            if gpu.pids is None:
                reading.notes.append(
                    f"{gpu.key}: NVML did not list the GPU's compute processes "
                    f"({gpu.pids_unknown}); whether other processes used it is unknown"
                )
            limit_mw = self._read(gpu, "enforced_limit", self._nvml.nvmlDeviceGetEnforcedPowerLimit)
            if limit_mw is not None:
                reading.power_limits_w[gpu.key] = float(limit_mw) / 1000.0
            energy, readout = self._energy(gpu, end_mj[gpu.key], in_window[gpu.key], reading)
            reading.energy_j[gpu.key] = energy
            if readout is not None:
                reading.readouts[gpu.key] = readout
                reading.methods[gpu.key] = self._label or _METHODS[readout]
        reading.method = self._window_method(reading)
        return reading

    def _energy(
        self, gpu: Gpu, end_mj: int | None, in_window: int, reading: WindowReading
    ) -> tuple[float | None, Readout | None]:
        start = gpu.start_mj
        if gpu.has_counter and start is not None and end_mj is not None:
            raw = gpu.raw_mj
            sequence = [start, *raw[:in_window], end_mj, *raw[in_window:]]
            if any(b < a for a, b in zip(sequence, sequence[1:], strict=False)):
                reading.counter_resets.append(gpu.key)
                reading.notes.append(
                    f"{gpu.key}: the energy counter went backwards (reset, e.g. a driver "
                    "reload); energy from integrated power samples instead"
                )
            elif end_mj == start:
                reading.counter_stalled.append(gpu.key)
                reading.notes.append(
                    f"{gpu.key}: the energy counter did not advance over "
                    f"{reading.duration_s:.2f} s; energy from integrated power samples instead"
                )
            else:
                return (end_mj - start) / 1000.0, "counter"
        elif gpu.has_counter:
            reading.notes.append(
                f"{gpu.key}: the energy counter could not be read at a window edge; "
                "energy from integrated power samples instead"
            )
        points = [
            (s["t_s"], s["power_w"]) for s in reading.device_samples(gpu.key)
            if s["power_w"] is not None
        ]
        energy = trapezoid_energy_j(points)
        if energy is None or energy <= 0:
            reading.notes.append(
                f"{gpu.key}: energy unknown ({len(points)} usable power samples)"
            )
            return None, None
        return energy, "power_integration"

    def _window_method(self, reading: WindowReading) -> EnergyMethod:
        if reading.total_energy_j is None:
            return "unavailable"
        if self._label is not None:
            return self._label
        return "nvml_counter" if reading.readout == "counter" else "nvml_power_integration"

    def provenance(self) -> dict[str, Any]:
        """Driver, CUDA, and each GPU's name, UUID, limits, modes and clocks (read at open)."""
        return {"sensor": "nvml", "method": self.method, "reason": self.reason,
                "energy_label": self._label, **self._static}

    def close(self) -> None:
        """Stop a running sampler and shut NVML down (once)."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if not self._closed:
            self._closed = True
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass


def open_nvml_sensor(
    gpu_uuids: Sequence[str],
    *,
    visible_devices: str | None = None,
    nvml: ModuleType | None = None,
    library: GpuLibrary | None = None,
) -> Sensor:
    """An NVML sensor for the run's GPUs, or an unavailable sensor that says why not.

    The library is ``nvml`` when given (tests), else the one ``library`` configures
    (``harness.devices``: the system's NVML by default, or simulated GPUs that follow this
    process's engine on ``gpu_uuids``).
    """
    if nvml is None:
        try:
            nvml = open_library(library, engine_uuids=list(gpu_uuids))
        except NoLibrary as e:
            return UnavailableSensor(str(e))
    lib: ModuleType = nvml
    try:
        lib.nvmlInit()
    except lib.NVMLError as e:
        return UnavailableSensor(init_reason(lib, e))
    try:
        gpus, how = select_gpus(lib, gpu_uuids, visible_devices)
        return NvmlSensor(lib, gpus, how, label=energy_label(library))
    except (NoDevices, lib.NVMLError) as e:
        try:
            lib.nvmlShutdown()
        except lib.NVMLError:
            pass
        reason = str(e) if isinstance(e, NoDevices) else f"NVML failed listing GPUs: {e}"
        return UnavailableSensor(reason)
