"""Budgets of the host's CPU and DRAM energy beside the GPUs, and of their total."""

from __future__ import annotations

import math

import pytest
from _scripted import LOADED_W, ClockedSensor, FakeClock, Timeline

from harness.agent import energy as energy_mod
from harness.agent import uncertainty as u
from harness.agent.baseline import Baseline
from harness.agent.crop import crop
from harness.agent.sensors.base import WindowReading
from harness.agent.sensors.composite import host_budgets, host_figures
from harness.agent.window import Window
from harness.analysis.uncertainty import BUDGETED
from harness.backends.engine import RequestTiming

PACKAGE_W = 80.0
DRAM_W = 15.0
GPU_S = (10.0, 40.0)  # the GPUs' window on the clock
LEAD_S, LAG_S = 0.15, 0.05  # the host's window opens this much earlier and closes this later


def rapl(t0: float, t1: float, watts: dict[str, float], interval_s: float = 0.1) -> WindowReading:
    """A RAPL reading over [t0, t1] at constant power per domain, as RaplSensor records it."""
    duration = t1 - t0
    rows = []
    for tick in range(int(duration / interval_s) + 1):
        t = min(tick * interval_s, duration)
        rows += [{"tick": tick, "t_s": t, "device": d, "power_w": w, "energy_j": w * t}
                 for d, w in watts.items()]
    return WindowReading(
        method="rapl", duration_s=duration, energy_j={d: w * duration for d, w in watts.items()},
        samples=rows, methods=dict.fromkeys(watts, "rapl"),
        readouts=dict.fromkeys(watts, "counter"), start_s=t0, end_s=t1)


def gpu_window(host: WindowReading | None) -> tuple[ClockedSensor, WindowReading]:
    """The GPUs at loaded-idle power over GPU_S, with ``host`` beside them."""
    clock = FakeClock()
    sensor = ClockedSensor(clock, Timeline(LOADED_W))
    clock.now = GPU_S[0]
    sensor.begin(100)
    clock.now = GPU_S[1]
    reading = sensor.end()
    reading.start_s, reading.end_s = GPU_S
    reading.host = host
    return sensor, reading


def host_beside(watts: dict[str, float] | None = None) -> WindowReading:
    return rapl(GPU_S[0] - LEAD_S, GPU_S[1] + LAG_S,
                watts or {"package-0": PACKAGE_W, "dram-0": DRAM_W})


def figures(reading: WindowReading, sensor: ClockedSensor, baselines: bool = False):
    timing = RequestTiming(16, 8, GPU_S[0], GPU_S[1], [GPU_S[1]] * 8)
    window = Window(reading, [(0, 0, timing)], 1, reading.duration_s, 0.0, 0.0)
    idle = Baseline(reading, sensor.devices) if baselines else None
    return energy_mod.energy_figures(window, sensor, idle, idle, 100)


def test_the_host_budget_bounds_the_energy_outside_the_gpus_window() -> None:
    _, reading = gpu_window(host_beside())
    budgets = host_budgets(reading)
    gpu_s = GPU_S[1] - GPU_S[0]
    truth = (PACKAGE_W + DRAM_W) * gpu_s  # the host's energy over the GPUs' window
    energy = budgets["energy_j"]
    assert energy.value == pytest.approx(truth + (PACKAGE_W + DRAM_W) * (LEAD_S + LAG_S))
    # the excess time at the domains' power, a rectangular half-width (added over the domains)
    assert energy.random["window_coverage"] == pytest.approx(
        (PACKAGE_W + DRAM_W) * (LEAD_S + LAG_S) / math.sqrt(3))
    assert abs(energy.value - truth) <= u.COVERAGE_FACTOR * energy.random_standard()
    assert set(energy.random) == {"counter_resolution", "window_coverage"}
    assert energy.systematic[u.ACCURACY] == pytest.approx(
        u.SENSOR_ACCURACY / math.sqrt(3) * energy.value)
    assert budgets["cpu_energy_j"].value == pytest.approx(PACKAGE_W * (gpu_s + LEAD_S + LAG_S))
    assert budgets["dram_energy_j"].value == pytest.approx(DRAM_W * (gpu_s + LEAD_S + LAG_S))
    assert budgets["mean_power_w"].value == pytest.approx(PACKAGE_W + DRAM_W)


def test_host_energy_states_its_budgets_per_figure_and_per_domain() -> None:
    _, reading = gpu_window(host_beside())
    host = host_figures(reading, None)
    assert host is not None and host.energy_j is not None
    assert set(host.uncertainty) == {"energy_j", "cpu_energy_j", "dram_energy_j", "mean_power_w"}
    stated = host.uncertainty["energy_j"]
    assert stated.expanded == pytest.approx(host_budgets(reading)["energy_j"].to_schema().expanded)
    assert stated.relative == pytest.approx(stated.expanded / host.energy_j)
    assert {t.name for t in stated.terms if t.systematic} == {"sensor_accuracy"}
    assert [set(d.uncertainty) for d in host.devices] == [{"energy_j", "mean_power_w"}] * 2


def test_no_dram_domain_leaves_dram_without_a_budget() -> None:
    _, reading = gpu_window(host_beside({"package-0": PACKAGE_W}))
    host = host_figures(reading, None)
    assert host is not None and host.dram_energy_j is None
    assert "dram_energy_j" not in host.uncertainty and "cpu_energy_j" in host.uncertainty


def test_the_total_combines_gpus_and_host_in_quadrature_naming_the_dominant_term() -> None:
    sensor, reading = gpu_window(host_beside())
    energy = figures(reading, sensor)
    assert energy.host is not None and energy.energy_j is not None
    assert energy.total_energy_j == pytest.approx(energy.energy_j + energy.host.energy_j)
    gpu, host = energy.uncertainty["energy_j"], energy.host.uncertainty["energy_j"]
    total = energy.uncertainty["total_energy_j"]
    assert total.expanded == pytest.approx(math.hypot(gpu.expanded, host.expanded))
    assert total.expanded_random == pytest.approx(
        math.hypot(gpu.expanded_random, host.expanded_random))
    names = {t.name for t in total.terms}
    assert {"sensor_accuracy", "host_sensor_accuracy", "host_window_coverage"} <= names
    largest = max(total.terms, key=lambda t: t.standard)
    assert total.dominant == largest.name == "host_sensor_accuracy"  # 95 W against 90 W


def test_an_unknown_host_leaves_no_total_and_no_total_budget() -> None:
    host = host_beside()
    host.energy_j["dram-0"] = None
    sensor, reading = gpu_window(host)
    energy = figures(reading, sensor)
    assert energy.total_energy_j is None and "total_energy_j" not in energy.uncertainty
    assert energy.host is not None and energy.host.uncertainty == {}


def test_a_cpu_runs_total_has_the_energys_own_budget() -> None:
    sensor, reading = gpu_window(None)
    energy = figures(reading, sensor)
    assert energy.host is None and energy.total_energy_j == energy.energy_j
    assert energy.uncertainty["total_energy_j"] == energy.uncertainty["energy_j"]


def test_a_cropped_window_crops_the_host_to_the_same_moments() -> None:
    # serving mode crops the load's window to its steady part: the host goes with it
    sensor, reading = gpu_window(host_beside())
    part = crop(reading, 5.0, 15.0)
    assert part.host is not None and part.host.duration_s == pytest.approx(10.0)
    assert part.host.energy_j["package-0"] == pytest.approx(PACKAGE_W * 10.0)
    energy = figures(part, sensor)
    assert energy.host is not None and energy.host.energy_j == pytest.approx(95.0 * 10.0)
    assert energy.total_energy_j == pytest.approx(energy.energy_j + 950.0)
    assert "window_coverage" not in {t.name for t in energy.host.uncertainty["energy_j"].terms}


def test_every_budget_the_agent_states_reaches_the_results_table() -> None:
    sensor, reading = gpu_window(host_beside())
    energy = figures(reading, sensor, baselines=True)
    columns = {part: {f for p, f in BUDGETED.values() if p == part}
               for part in ("energy", "energy.host")}
    assert "peak_power_w" in energy.uncertainty
    assert set(energy.uncertainty) <= columns["energy"], set(energy.uncertainty) - columns["energy"]
    assert energy.host is not None
    assert set(energy.host.uncertainty) - {"mean_power_w"} <= columns["energy.host"]
