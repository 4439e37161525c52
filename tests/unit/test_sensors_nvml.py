"""NVML sensor logic with pynvml's functions patched (autospec): this machine has no GPU.

The fake keeps per-GPU state (counter, power, temperature ...) behind the patched calls; any
NVML call the fake does not cover fails the test instead of reaching the real library.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pynvml
import pytest

from harness.agent.protocol import TIMESERIES_COLUMNS
from harness.agent.sensors import select_sensor
from harness.agent.sensors.composite import CompositeSensor
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.nvml import NvmlSensor, open_nvml_sensor
from harness.agent.sensors.throttle import throttle_names

UUIDS = [
    "GPU-00000000-1111-2222-3333-444444444444",
    "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
    "GPU-12345678-9abc-def0-1234-56789abcdef0",
]


def nvml_error(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeGpus:
    """What the patched NVML calls answer. Handles are the NVML indices."""

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self.init_error: int | None = None
        self.power_mw: dict[int, int | None] = {i: 250_000 for i in range(count)}
        #: a callable per GPU returning the next counter value (mJ), or None: not supported
        self.counter: dict[int, Callable[[], int] | None] = {
            i: self.timed_counter(250.0) for i in range(count)
        }
        self.temperature_c = {i: 45 for i in range(count)}
        self.throttle = {i: 0 for i in range(count)}
        self.event_reasons_supported = True
        self.pids: dict[int, list[int]] = {i: [] for i in range(count)}
        self.persistence = {i: pynvml.NVML_FEATURE_ENABLED for i in range(count)}
        self.mig = {i: (0, 0) for i in range(count)}
        self.counter_calls: list[int] = []

    @staticmethod
    def timed_counter(power_w: float, base_mj: int = 5_000_000) -> Callable[[], int]:
        start = time.perf_counter()
        return lambda: base_mj + int(power_w * (time.perf_counter() - start) * 1000)

    @staticmethod
    def scripted(edges: list[int], sampled: list[int]) -> Callable[[], int]:
        """Counter values for the calling thread: the agent's (open, edges, closing sample)
        or the sampler's (its ticks; the last value repeats)."""
        main: Iterator[int] = iter(edges)
        ticks = list(sampled)

        def read() -> int:
            if threading.current_thread() is threading.main_thread():
                return next(main)
            return ticks.pop(0) if len(ticks) > 1 else ticks[0]

        return read

    # --- the patched functions -----------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise nvml_error(self.init_error)

    def nvmlShutdown(self) -> None:
        return None

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return UUIDS[handle]

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        fn = self.counter[handle]
        if fn is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        self.counter_calls.append(handle)
        return fn()

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        value = self.power_mw[handle]
        if value is None:
            raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return self.temperature_c[handle]

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:
        return {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind]

    def nvmlDeviceGetMaxClockInfo(self, handle: int, kind: int) -> int:
        return {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind]

    def nvmlDeviceGetApplicationsClock(self, handle: int, kind: int) -> int:
        raise nvml_error(pynvml.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetMemoryInfo(self, handle: int, version: Any = None) -> Any:
        return SimpleNamespace(total=80 * 2**30, used=(handle + 1) * 2**30, free=0)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=97, memory=40)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        if not self.event_reasons_supported:
            raise nvml_error(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        return self.throttle[handle]

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: int) -> int:
        return self.throttle[handle] | 0x1000_0000  # marks the fallback call in tests

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[Any]:
        return [SimpleNamespace(pid=p, usedGpuMemory=0) for p in self.pids[handle]]

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return 12080

    def nvmlSystemGetDriverVersion(self) -> str:
        return "570.124.06"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12.570.124.06"

    def nvmlDeviceGetMigMode(self, device: int) -> tuple[int, int]:
        return self.mig[device]

    def nvmlDeviceGetEccMode(self, handle: int) -> tuple[int, int]:
        return (1, 1)

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA H200"

    def nvmlDeviceGetPciInfo(self, handle: int) -> Any:
        return SimpleNamespace(busId=f"00000000:{handle + 0x18:02X}:00.0".encode())

    def nvmlDeviceGetCudaComputeCapability(self, handle: int) -> tuple[int, int]:
        return (9, 0)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementLimit(self, handle: int) -> int:
        return 700_000

    def nvmlDeviceGetPowerManagementDefaultLimit(self, handle: int) -> int:
        return 700_000

    def nvmlDeviceGetPersistenceMode(self, handle: int) -> int:
        return self.persistence[handle]


PATCHED = [n for n in vars(FakeGpus) if n.startswith("nvml")]


@pytest.fixture
def gpus() -> Iterator[FakeGpus]:
    fake = FakeGpus(count=3)
    patches = [
        mock.patch.object(pynvml, name, autospec=True, side_effect=getattr(fake, name))
        for name in PATCHED
    ]

    def unpatched(name: str) -> None:
        raise AssertionError(f"the test reached the real NVML library ({name})")

    patches.append(
        mock.patch.object(pynvml, "_nvmlGetFunctionPointer", autospec=True, side_effect=unpatched)
    )
    for p in patches:
        p.start()
    yield fake
    for p in patches:
        p.stop()


def open_one(gpus: FakeGpus, uuid: str = UUIDS[0]) -> NvmlSensor:
    sensor = open_nvml_sensor([uuid])
    assert isinstance(sensor, NvmlSensor), sensor.reason
    return sensor


def window(sensor: NvmlSensor, seconds: float, interval_ms: int = 10) -> Any:
    sensor.begin(interval_ms)
    time.sleep(seconds)
    return sensor.end()


# --- energy from the counter ---------------------------------------------------------------


def test_counter_delta_at_window_edges(gpus: FakeGpus) -> None:
    # this thread: probe at open, begin edge, end edge, closing sample; the sampler: tick 0
    gpus.counter[0] = FakeGpus.scripted([7, 1_000_000, 1_010_000, 1_010_100], [1_000_500])
    sensor = open_one(gpus)
    assert sensor.method == "nvml_counter"
    reading = window(sensor, 0.1, interval_ms=10_000)
    assert reading.method == "nvml_counter"
    assert reading.energy_j == {"gpu0": pytest.approx(10.0)}
    assert reading.methods == {"gpu0": "nvml_counter"}
    assert [s["energy_j"] for s in reading.samples] == [pytest.approx(0.5), pytest.approx(10.1)]
    assert reading.counter_resets == [] and reading.counter_stalled == []
    sensor.close()


def test_counter_energy_tracks_power_over_time(gpus: FakeGpus) -> None:
    sensor = open_one(gpus)
    reading = window(sensor, 0.5)
    assert reading.method == "nvml_counter"
    assert reading.energy_j["gpu0"] == pytest.approx(250.0 * reading.duration_s, rel=0.05)
    sensor.close()


def test_counter_reset_falls_back_to_integration(gpus: FakeGpus) -> None:
    gpus.counter[0] = FakeGpus.scripted([7, 5_000_000, 2_000, 2_100], [100])
    sensor = open_one(gpus)
    reading = window(sensor, 0.1, interval_ms=10_000)
    assert reading.counter_resets == ["gpu0"]
    assert reading.method == "nvml_power_integration"
    assert reading.methods == {"gpu0": "nvml_power_integration"}
    span = reading.samples[-1]["t_s"] - reading.samples[0]["t_s"]
    assert reading.energy_j["gpu0"] == pytest.approx(250.0 * span)
    assert any("went backwards" in n for n in reading.notes)
    sensor.close()


def test_counter_that_does_not_advance_is_not_zero_energy(gpus: FakeGpus) -> None:
    gpus.counter[0] = FakeGpus.scripted([7, 1_000_000, 1_000_000, 1_000_000], [1_000_000])
    sensor = open_one(gpus)
    reading = window(sensor, 0.1, interval_ms=10_000)
    assert reading.counter_stalled == ["gpu0"]
    assert reading.method == "nvml_power_integration"
    assert reading.energy_j["gpu0"] is not None and reading.energy_j["gpu0"] > 0


def test_no_counter_integrates_sampled_power_without_busy_waiting(gpus: FakeGpus) -> None:
    gpus.counter[0] = None
    gpus.power_mw[0] = 150_000
    sensor = open_one(gpus)
    assert sensor.method == "nvml_power_integration"
    reading = window(sensor, 0.5, interval_ms=20)
    assert reading.method == "nvml_power_integration"
    powers = [s["power_w"] for s in reading.samples]
    assert len(powers) >= 10 and set(powers) == {150.0}
    assert reading.energy_j["gpu0"] == pytest.approx(150.0 * reading.duration_s, rel=0.1)
    assert all(s["energy_j"] is None for s in reading.samples)
    # the sampler sleeps between samples: its CPU time is a small part of the window
    assert reading.sampler_cpu_s is not None and reading.sampler_cpu_s < 0.2 * reading.duration_s
    sensor.close()


def test_no_power_and_no_counter_is_unknown_not_zero(gpus: FakeGpus) -> None:
    gpus.counter[0] = None
    gpus.power_mw[0] = None
    sensor = open_one(gpus)
    reading = window(sensor, 0.05)
    assert reading.energy_j == {"gpu0": None}
    assert reading.total_energy_j is None
    assert reading.method == "unavailable"


# --- which GPUs ----------------------------------------------------------------------------


def test_gpus_are_matched_by_uuid_not_index(gpus: FakeGpus) -> None:
    sensor = open_nvml_sensor([UUIDS[2], UUIDS[0]])
    assert isinstance(sensor, NvmlSensor)
    assert sensor.devices == ["gpu0", "gpu1"]
    devices = sensor.provenance()["devices"]
    assert [(d["device"], d["uuid"], d["nvml_index"]) for d in devices] == [
        ("gpu0", UUIDS[2], 2), ("gpu1", UUIDS[0], 0),
    ]
    gpus.counter_calls.clear()
    reading = window(sensor, 0.05)
    assert set(gpus.counter_calls) == {0, 2}  # GPU 1 is not part of the run
    assert set(reading.energy_j) == {"gpu0", "gpu1"}
    # per-device samples come from the right handle (memory used = (index + 1) GiB)
    assert reading.device_samples("gpu0")[0]["memory_used_bytes"] == 3 * 2**30
    assert reading.device_samples("gpu1")[0]["memory_used_bytes"] == 1 * 2**30


def test_uuid_prefix_and_unknown_uuid(gpus: FakeGpus) -> None:
    sensor = open_nvml_sensor(["GPU-aaaaaaaa"])
    assert isinstance(sensor, NvmlSensor)
    assert sensor.provenance()["devices"][0]["uuid"] == UUIDS[1]
    missing = open_nvml_sensor(["GPU-ffffffff-0000-0000-0000-000000000000"])
    assert isinstance(missing, UnavailableSensor)
    assert "GPU-ffffffff" in (missing.reason or "") and UUIDS[0] in (missing.reason or "")


def test_mig_instance_uuid_is_unavailable(gpus: FakeGpus) -> None:
    sensor = open_nvml_sensor(["MIG-0b3a4c2e-1111-2222-3333-444444444444"])
    assert isinstance(sensor, UnavailableSensor)
    assert "MIG" in (sensor.reason or "")


def test_without_uuids_all_visible_gpus_or_cuda_visible_devices(gpus: FakeGpus) -> None:
    every = open_nvml_sensor([])
    assert isinstance(every, NvmlSensor) and len(every.devices) == 3
    assert every.provenance()["selected_by"] == "all NVML devices visible"
    by_index = open_nvml_sensor([], visible_devices="1")
    assert isinstance(by_index, NvmlSensor)
    assert by_index.provenance()["devices"][0]["uuid"] == UUIDS[1]
    by_uuid = open_nvml_sensor([], visible_devices=UUIDS[2])
    assert isinstance(by_uuid, NvmlSensor)
    assert by_uuid.provenance()["devices"][0]["uuid"] == UUIDS[2]
    assert isinstance(open_nvml_sensor([], visible_devices="7"), UnavailableSensor)
    assert isinstance(open_nvml_sensor([], visible_devices=""), UnavailableSensor)


def test_select_sensor_for_cuda_uses_nvml(gpus: FakeGpus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sensor = select_sensor("cuda", [UUIDS[1]])
    # the GPUs through NVML, the host's CPU and DRAM (RAPL) beside them in the same window
    assert isinstance(sensor, CompositeSensor) and isinstance(sensor.gpus, NvmlSensor)
    assert sensor.provenance()["devices"][0]["uuid"] == UUIDS[1]


# --- unavailable, with the reason ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVML"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "permission denied"),
    ],
)
def test_nvml_init_failure_is_unavailable_never_zero(
    gpus: FakeGpus, code: int, words: str
) -> None:
    gpus.init_error = code
    sensor = open_nvml_sensor([])
    assert isinstance(sensor, UnavailableSensor)
    assert words in (sensor.reason or "")
    assert not sensor.available
    sensor.begin(100)
    reading = sensor.end()
    assert reading.method == "unavailable"
    assert reading.total_energy_j is None
    assert 0 not in reading.energy_j.values() and 0.0 not in reading.energy_j.values()


def test_no_gpu_is_unavailable(gpus: FakeGpus) -> None:
    gpus.count = 0
    sensor = open_nvml_sensor([])
    assert isinstance(sensor, UnavailableSensor)
    assert "no GPU" in (sensor.reason or "")


def test_nvidia_ml_py_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    sensor = open_nvml_sensor([])
    assert isinstance(sensor, UnavailableSensor)
    assert "nvidia-ml-py" in (sensor.reason or "")


def test_real_nvml_on_this_machine_is_unavailable_with_reason() -> None:
    # no driver here: the real library is not found, and that is what the result must say
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA driver; tests/gpu covers it")
    sensor = open_nvml_sensor([])
    assert isinstance(sensor, UnavailableSensor)
    assert sensor.reason


# --- samples and provenance -----------------------------------------------------------------


def test_samples_carry_every_timeseries_field(gpus: FakeGpus) -> None:
    gpus.throttle[0] = 0x4 | 0x1
    gpus.pids[0] = [os.getpid(), 4242]
    sensor = open_one(gpus)
    reading = window(sensor, 0.1, interval_ms=20)
    row = reading.samples[0]
    for column in TIMESERIES_COLUMNS[1:]:
        assert column in row, column
    assert row["power_w"] == 250.0
    assert row["temperature_c"] == 45
    assert (row["sm_clock_mhz"], row["mem_clock_mhz"]) == (1980, 2619)
    assert row["memory_used_bytes"] == 2**30
    assert row["utilization_gpu_pct"] == 97
    assert row["throttle_reasons"] == 0x5
    assert throttle_names(row["throttle_reasons"]) == ["gpu_idle", "sw_power_cap"]
    assert reading.gpu_processes == {"gpu0": sorted([os.getpid(), 4242])}
    assert [s["tick"] for s in reading.samples] == sorted(s["tick"] for s in reading.samples)


def test_old_driver_without_clock_event_call_uses_throttle_reasons(gpus: FakeGpus) -> None:
    gpus.event_reasons_supported = False
    gpus.throttle[0] = 0x4
    sensor = open_one(gpus)
    reading = window(sensor, 0.05, interval_ms=20)
    assert {s["throttle_reasons"] for s in reading.samples} == {0x1000_0004}


def test_provenance_names_the_gpu_and_its_settings(gpus: FakeGpus) -> None:
    gpus.persistence[0] = pynvml.NVML_FEATURE_DISABLED
    gpus.mig[0] = (1, 1)
    info = open_one(gpus).provenance()
    assert info["sensor"] == "nvml" and info["method"] == "nvml_counter"
    assert info["driver_version"] == "570.124.06"
    assert info["cuda_driver_version"] == "12.8"
    dev = info["devices"][0]
    assert dev["name"] == "NVIDIA H200"
    assert dev["uuid"] == UUIDS[0]
    assert dev["pci_bus_id"] == "00000000:18:00.0"
    assert dev["power_limit_w"] == 700.0
    assert dev["persistence_mode"] is False
    assert dev["mig_mode"] is True
    assert dev["ecc_mode"] is True
    assert dev["compute_capability"] == "9.0"
    assert dev["sm_clock_max_mhz"] == 1980
    assert dev["sm_clock_applications_mhz"] is None  # not supported: unknown, not 0
    assert dev["energy_counter"] is True


def test_close_stops_a_running_sampler_and_shuts_nvml_down(gpus: FakeGpus) -> None:
    sensor = open_one(gpus)
    sensor.begin(10)
    sensor.close()
    sensor.close()
    assert pynvml.nvmlShutdown.call_count == 1  # type: ignore[attr-defined]
