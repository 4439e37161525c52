"""The simulated GPU on its own: exact truth, counter, power sensor, temperature, limits,
permissions, settings shared through the state folder, and the truth file."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from harness.agent import activity
from harness.agent.activity import Activity
from harness.testing.simgpu import commands as simnvml
from harness.testing.simgpu.config import SimulatedGpus, StatePower
from harness.testing.simgpu.device import COUNTER_BASE_MJ, SimDevice
from harness.testing.simgpu.nvml import SimulatedNvml
from harness.testing.simgpu.state import REREAD_S
from harness.testing.simgpu.timeline import Timeline
from harness.testing.simgpu.truth import energy_between, read_truth

LEVELS = StatePower(no_context=60.0, loaded_idle=100.0, prefill=500.0, decode=300.0)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def quiet_bus() -> Iterator[None]:
    activity.publish(Activity.NO_CONTEXT)
    yield
    activity.publish(Activity.NO_CONTEXT)


def device(t0: float = 0.0, index: int = 0, **config: object) -> SimDevice:
    return SimDevice(index, SimulatedGpus(power_w=LEVELS, **config), t0)  # type: ignore[arg-type]


def library(clock: Clock, **config: object) -> SimulatedNvml:
    lib = SimulatedNvml(SimulatedGpus(power_w=LEVELS, **config), clock=clock)  # type: ignore[arg-type]
    lib.nvmlInit()
    return lib


# --- the timeline -----------------------------------------------------------------------------


def test_timeline_integrates_steps_exactly() -> None:
    tl = Timeline()
    tl.step(0.0, 100.0)
    tl.step(2.0, 300.0)
    tl.step(2.0, 300.0)  # a repeat changes nothing
    tl.step(5.5, 50.0)
    assert tl.between(0.0, 2.0) == 200.0
    assert tl.between(1.0, 6.0) == 100.0 + 3.5 * 300.0 + 0.5 * 50.0
    assert tl.power(2.0) == 300.0 and tl.power(1.999) == 100.0
    assert tl.segments(1.0, 3.0) == [(1.0, 2.0, 100.0), (2.0, 3.0, 300.0)]


def test_part_time_sensor_sees_only_its_share_of_each_period() -> None:
    tl = Timeline()
    for k in range(20):  # 50 ms at 400 W, then 50 ms at 100 W, every 100 ms
        tl.step(k * 0.1, 400.0)
        tl.step(k * 0.1 + 0.05, 100.0)
    assert tl.observed_mean(0.0, 1.0, 0.1, 1.0) == pytest.approx(250.0)
    # looking 25 % of each period from its start: only the bursts
    assert tl.observed_mean(0.0, 1.0, 0.1, 0.25) == pytest.approx(400.0)
    # the same sensor 50 ms out of phase: only the lulls
    assert tl.observed_mean(0.0, 1.0, 0.1, 0.25, phase_s=0.05) == pytest.approx(100.0)


# --- the counter ------------------------------------------------------------------------------


def test_counter_is_true_energy_as_of_its_last_update() -> None:
    dev = device(counter_period_ms=100.0)
    dev.enter(Activity.DECODE, 1.0)
    base = COUNTER_BASE_MJ
    for t in (0.05, 0.5, 1.04, 1.37, 2.0):
        updated = math.floor(t / 0.1) * 0.1  # device 0: phase 0
        truth_mj = dev.timeline.between(0.0, updated) * 1000
        assert dev.counter_mj(t) == int(base + truth_mj)
    # constant between updates, a step at each update
    assert dev.counter_mj(1.21) == dev.counter_mj(1.29) < dev.counter_mj(1.31)


@pytest.mark.parametrize("period_ms", [20.0, 1.0, 0.0])
def test_fast_counters_follow_the_truth_closely(period_ms: float) -> None:
    dev = device(counter_period_ms=period_ms)
    dev.enter(Activity.PREFILL, 0.3)
    dev.enter(Activity.DECODE, 0.7)
    for t in (0.31, 0.75, 1.3):
        lag_j = dev.timeline.power(t) * period_ms / 1000
        measured_j = (dev.counter_mj(t) - COUNTER_BASE_MJ) / 1000
        assert dev.timeline.between(0.0, t) - lag_j - 1e-3 <= measured_j
        assert measured_j <= dev.timeline.between(0.0, t) + 1e-3


def test_each_device_updates_at_its_own_phase() -> None:
    a, b = device(index=0), device(index=1)
    times = [i / 1000 for i in range(1, 400)]

    def updates(d: SimDevice) -> list[float]:
        return [t for t, u in zip(times, times[1:], strict=False) if d.counter_mj(u) != d.counter_mj(t)]

    step_a, step_b = updates(a), updates(b)
    for steps in (step_a, step_b):  # every 100 ms
        gaps = [v - u for u, v in zip(steps, steps[1:], strict=False)]
        assert len(gaps) >= 2 and all(g == pytest.approx(0.1, abs=0.0015) for g in gaps)
    # device 1 updates 61.8 ms (its golden-ratio phase) after device 0
    assert (step_b[0] - step_a[0]) % 0.1 == pytest.approx(0.062, abs=0.0015)


def test_counter_restarts_from_zero_at_the_reset() -> None:
    dev = device(counter_reset_after_s=1.0, counter_period_ms=0.0)
    before = dev.counter_mj(0.9)
    after = dev.counter_mj(1.5)
    assert before > COUNTER_BASE_MJ
    assert after == int(0.5 * LEVELS.no_context * 1000)


def test_bias_scales_every_reading_not_the_truth() -> None:
    dev = device(sensor_bias=0.04, counter_period_ms=0.0, power_average_s=0.0)
    assert dev.counter_mj(2.0) - 2 * COUNTER_BASE_MJ // 2 == int(2.0 * 60.0 * 1.04 * 1000)
    assert dev.power_mw(2.0) == round(60.0 * 1.04 * 1000)
    assert dev.timeline.between(0.0, 2.0) == 120.0


# --- the power reading, temperature, limits ---------------------------------------------------


def test_power_reading_is_a_trailing_average() -> None:
    dev = device(power_average_s=1.0)
    dev.enter(Activity.LOADED_IDLE, 0.0)
    dev.enter(Activity.DECODE, 10.0)
    assert dev.power_mw(10.5) == round((0.5 * 100.0 + 0.5 * 300.0) * 1000)
    assert dev.power_mw(11.5) == 300_000
    instant = device(power_average_s=0.0)
    instant.enter(Activity.DECODE, 1.0)
    assert instant.power_mw(1.0001) == 300_000


def test_a_part_time_power_sensor_misses_what_falls_between_its_looks() -> None:
    dev = device(power_average_s=1.0, power_sensor_duty=0.25, power_sensor_period_ms=100.0)
    dev.enter(Activity.LOADED_IDLE, 0.0)
    for k in range(30):  # 25 ms prefill bursts at the start of every 100 ms (device 0: phase 0)
        dev.enter(Activity.PREFILL, 1.0 + k * 0.1)
        dev.enter(Activity.LOADED_IDLE, 1.0 + k * 0.1 + 0.025)
    true_mean = dev.timeline.between(2.0, 3.0)  # 1 s: a quarter at 500 W, the rest at 100 W
    assert true_mean == pytest.approx(200.0)
    assert dev.power_mw(3.0) == 500_000  # it looks only while the bursts run
    shifted = device(index=1, power_average_s=1.0, power_sensor_duty=0.25)
    shifted.enter(Activity.LOADED_IDLE, 0.0)
    for k in range(30):
        shifted.enter(Activity.PREFILL, 1.0 + k * 0.1)
        shifted.enter(Activity.LOADED_IDLE, 1.0 + k * 0.1 + 0.025)
    assert shifted.power_mw(3.0) == 100_000  # device 1 looks 61.8 ms later: only idle


def test_temperature_responds_in_first_order() -> None:
    dev = device(idle_temperature_c=30.0, temperature_c_per_w=0.1, temperature_tau_s=10.0)
    assert dev.temperature_c(0.0) == pytest.approx(30.0)
    dev.enter(Activity.DECODE, 0.0)
    target = 30.0 + 0.1 * (300.0 - 60.0)
    assert dev.temperature_c(10.0) == pytest.approx(target + (30.0 - target) * math.exp(-1))
    assert dev.temperature_c(200.0) == pytest.approx(target, abs=1e-6)


def test_power_limit_caps_power_and_slows_the_clock() -> None:
    dev = device(power_limit_w=250.0, power_limit_min_w=200.0)
    dev.enter(Activity.PREFILL, 1.0)
    assert dev.true_power_w() == 250.0 and dev.capped()
    assert dev.event_reasons() == pynvml.nvmlClocksEventReasonSwPowerCap
    assert dev.sm_clock_mhz() == int(1980 * 250 / 500)
    dev.enter(Activity.LOADED_IDLE, 2.0)
    assert dev.true_power_w() == 100.0 and dev.event_reasons() == 0x1  # idle
    assert dev.sm_clock_mhz() == 345


# --- the library ------------------------------------------------------------------------------


def test_library_speaks_pynvml() -> None:
    clock = Clock()
    lib = library(clock, count=2)
    h = lib.nvmlDeviceGetHandleByIndex(1)
    assert lib.nvmlDeviceGetCount() == 2
    assert lib.nvmlDeviceGetHandleByUUID(lib.nvmlDeviceGetUUID(h)) == h
    assert lib.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM and lib.NVMLError is pynvml.NVMLError
    memory = lib.nvmlDeviceGetMemoryInfo(h)
    assert memory.total == 80 * 2**30 and memory.used == 0 and memory.free == memory.total
    assert lib.nvmlDeviceGetUtilizationRates(h).gpu == 0
    assert lib.nvmlDeviceGetPciInfo(h).busId in ("00000000:19:00.0", b"00000000:19:00.0")
    assert lib.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU) == 32
    assert lib.nvmlDeviceGetPowerManagementLimitConstraints(h) == [200_000, 700_000]
    assert lib.nvmlDeviceGetSupportedGraphicsClocks(h, 2619)[0] == 1980
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceGetHandleByIndex(2)
    with pytest.raises(pynvml.NVMLError_NotFound):
        lib.nvmlDeviceGetHandleByUUID("GPU-nope")
    with pytest.raises(AttributeError):
        lib.nvmlDeviceGetFanSpeed  # noqa: B018 - not simulated: absent, as the sensor expects
    lib.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        lib.nvmlDeviceGetCount()


def test_pre_volta_has_no_energy_counter() -> None:
    lib = library(Clock(), energy_counter=False)
    h = lib.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        lib.nvmlDeviceGetTotalEnergyConsumption(h)
    assert lib.nvmlDeviceGetPowerUsage(h) == 60_000
    assert lib.nvmlDeviceGetCudaComputeCapability(h) == (6, 0)


def test_hidden_process_list_is_no_permission() -> None:
    lib = library(Clock(), process_list=False)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        lib.nvmlDeviceGetComputeRunningProcesses(lib.nvmlDeviceGetHandleByIndex(0))


def test_call_latency_is_slept_per_call() -> None:
    lib = SimulatedNvml(SimulatedGpus(call_latency_ms=5.0))
    lib.nvmlInit()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    t0 = time.perf_counter()
    for _ in range(4):
        lib.nvmlDeviceGetPowerUsage(h)
    assert time.perf_counter() - t0 >= 4 * 0.005


def test_settings_need_root_and_permission(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lib = SimulatedNvml(SimulatedGpus(), state_dir=tmp_path)
    lib.nvmlInit()
    h = lib.nvmlDeviceGetHandleByIndex(0)
    monkeypatch.setattr(simnvml, "is_root", lambda: False)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        lib.nvmlDeviceSetPowerManagementLimit(h, 300_000)
    monkeypatch.setattr(simnvml, "is_root", lambda: True)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetPowerManagementLimit(h, 100_000)  # below the constraints
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        lib.nvmlDeviceSetGpuLockedClocks(h, 1980, 345)
    lib.nvmlDeviceSetPowerManagementLimit(h, 300_000)
    assert lib.nvmlDeviceGetEnforcedPowerLimit(h) == 300_000
    locked = SimulatedNvml(SimulatedGpus(settings_permitted=False), state_dir=tmp_path / "other")
    locked.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NoPermission):
        locked.nvmlDeviceResetGpuLockedClocks(locked.nvmlDeviceGetHandleByIndex(0))


def test_settings_made_by_one_process_reach_the_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(simnvml, "is_root", lambda: True)
    config = SimulatedGpus(power_w=LEVELS, count=2, power_limit_min_w=200.0, counter_period_ms=0.0,
                           power_average_s=0.0)
    clock = Clock()
    agent = SimulatedNvml(config, state_dir=tmp_path, engine_uuids=[], clock=clock)
    agent.nvmlInit()
    host = SimulatedNvml(config, state_dir=tmp_path)  # the controller, another instance
    host.nvmlInit()
    h = agent.nvmlDeviceGetHandleByIndex(1)
    try:
        agent._on_activity(Activity.PREFILL, clock.now)  # the engine computes: 500 W wanted
        assert agent.nvmlDeviceGetPowerUsage(h) == 500_000
        host.nvmlDeviceSetPowerManagementLimit(host.nvmlDeviceGetHandleByIndex(1), 250_000)
        host.nvmlDeviceSetGpuLockedClocks(host.nvmlDeviceGetHandleByIndex(0), 345, 990)
        clock.now += REREAD_S + 0.01
        assert agent.nvmlDeviceGetEnforcedPowerLimit(h) == 250_000
        assert agent.nvmlDeviceGetPowerUsage(h) == 250_000
        assert agent.nvmlDeviceGetCurrentClocksEventReasons(h) == 0x4
        h0 = agent.nvmlDeviceGetHandleByIndex(0)  # locked at half the clock: half the dynamic power
        assert agent.nvmlDeviceGetPowerUsage(h0) == round((100.0 + 400.0 * 990 / 1980) * 1000)
        # a new instance (a container started later, a restarted controller) sees them at once
        later = SimulatedNvml(config, state_dir=tmp_path)
        later.nvmlInit()
        assert later.nvmlDeviceGetEnforcedPowerLimit(later.nvmlDeviceGetHandleByIndex(1)) == 250_000
        host.nvmlDeviceResetGpuLockedClocks(host.nvmlDeviceGetHandleByIndex(0))
        clock.now += REREAD_S + 0.01
        assert agent.nvmlDeviceGetPowerUsage(h0) == 500_000
    finally:
        agent.close()


def test_truth_file_round_trip(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.json"
    config = SimulatedGpus(count=2, power_w=LEVELS, counter_period_ms=1.0)
    lib = SimulatedNvml(config, truth_file=truth_file,
                        engine_uuids=[config.uuid(1)])  # the engine computes on device 1 only
    lib.nvmlInit()
    h = lib.nvmlDeviceGetHandleByIndex(1)
    e0, t0 = lib.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter()
    activity.publish(Activity.LOADED_IDLE)
    time.sleep(0.05)
    activity.publish(Activity.PREFILL)
    time.sleep(0.03)
    activity.publish(Activity.DECODE)
    time.sleep(0.05)
    activity.publish(Activity.LOADED_IDLE)
    t1, e1 = time.perf_counter(), lib.nvmlDeviceGetTotalEnergyConsumption(h)
    lib.nvmlShutdown()
    truth = read_truth(truth_file)
    assert truth.config == config and truth.closed_s >= t1
    d1 = truth.device(config.uuid(1))
    assert [s for _, s in d1.states] == ["no_context", "loaded_idle", "prefill", "decode",
                                         "loaded_idle"]
    assert not truth.device(0).follows_engine and [s for _, s in truth.device(0).states] == [
        "no_context"]
    # the counter's difference is the truth over the same interval, within one 1 ms update
    measured = (e1 - e0) / 1000
    assert measured == pytest.approx(energy_between(truth, 1, t0, t1), abs=0.5 + 1e-3)
    assert energy_between(truth, 0, t0, t1) == pytest.approx(60.0 * (t1 - t0))
    by_state = d1.energy_by_state(t0, t1)
    assert by_state["prefill"] == pytest.approx(500.0 * 0.03, rel=0.3)
    assert sum(by_state.values()) == pytest.approx(d1.energy_between(t0, t1))
    with pytest.raises(ValueError, match="outside"):
        d1.energy_between(t0 - 100, t1)


# --- the report says so -----------------------------------------------------------------------


def test_the_report_says_in_its_first_line_that_figures_are_simulated(tmp_path: Path) -> None:
    from _synthetic import make_study

    from harness.analysis.report import build
    from harness.analysis.report.blocks import SIMULATED_NOTE
    from harness.results.io import atomic_write_json, read_model
    from harness.results.schema import ExperimentResult

    study = make_study(tmp_path, sweep={"batch_size": [1, 8]}, j_factors={}, cycles=1)
    build(study, figures=False)
    assert SIMULATED_NOTE not in (study / "report" / "report.md").read_text()
    for path in (study / "runs").glob("*/result.json"):
        result = read_model(path, ExperimentResult)
        result.energy.energy_method = "simulated"
        atomic_write_json(path, result)
    build(study, figures=False)
    first = (study / "report" / "report.md").read_text().splitlines()[0]
    assert first.startswith("# Study synth") and first.endswith(SIMULATED_NOTE)
    assert "SIMULATED GPUs" in first
