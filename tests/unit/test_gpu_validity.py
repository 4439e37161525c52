"""Whether requested GPU settings held in the window: each miss is a named warning."""

from __future__ import annotations

from typing import Any

from harness.agent.gpu_validity import settings_warnings
from harness.agent.sensors.base import WindowReading
from harness.config.gpu import GpuSettings

WINDOW_S = 10.0


def window(mean_w: float = 290.0, sm: int = 1410, mem: int = 2619, throttle: int = 0,
           busy: int = 100) -> WindowReading:
    rows: list[dict[str, Any]] = [
        {"device": "gpu0", "tick": i, "sm_clock_mhz": sm, "mem_clock_mhz": mem,
         "throttle_reasons": throttle, "utilization_gpu_pct": busy} for i in range(20)]
    return WindowReading(method="nvml_counter", duration_s=WINDOW_S,
                         energy_j={"gpu0": mean_w * WINDOW_S}, samples=rows)


def codes(settings: GpuSettings, reading: WindowReading, limit_w: float = 300.0) -> list[str]:
    found = settings_warnings(settings, reading, {"gpu0": {"power_limit_w": limit_w}})
    return [w.code for w in found]


ALL = GpuSettings(power_limit_w=300, sm_clock_mhz=1410, memory_clock_mhz=2619)


def test_settings_that_held_give_no_warning() -> None:
    assert codes(ALL, window()) == []
    assert codes(GpuSettings(), window(mean_w=900, sm=1)) == []  # nothing asked, nothing checked


def test_an_enforced_limit_other_than_requested_is_named() -> None:
    assert codes(GpuSettings(power_limit_w=300), window(), limit_w=450.0) == [
        "power_limit_not_held"]


def test_power_above_the_requested_limit_is_named() -> None:
    assert codes(GpuSettings(power_limit_w=300), window(mean_w=340.0)) == ["power_limit_not_held"]


def test_a_clock_off_its_lock_is_named_with_its_reasons() -> None:
    found = settings_warnings(GpuSettings(sm_clock_mhz=1410), window(sm=1100, throttle=0x4),
                              {"gpu0": {}})
    assert [w.code for w in found] == ["sm_clock_not_held"]
    assert "sw_power_cap" in found[0].message and "1410 MHz" in found[0].message
    assert codes(GpuSettings(memory_clock_mhz=2619), window(mem=1593)) == [
        "memory_clock_not_held"]


def test_idle_samples_do_not_count_against_a_clock_lock() -> None:
    assert codes(GpuSettings(sm_clock_mhz=1410), window(sm=345, busy=0)) == []


def test_the_limit_read_at_the_window_end_wins_over_the_one_read_at_open() -> None:
    reading = window()
    reading.power_limits_w["gpu0"] = 700.0  # changed by someone after the sensor opened
    found = settings_warnings(GpuSettings(power_limit_w=300), reading,
                              {"gpu0": {"power_limit_w": 300.0}})
    assert [w.code for w in found] == ["power_limit_not_held"] and "700 W" in found[0].message
