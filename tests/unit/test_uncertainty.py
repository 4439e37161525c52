"""Uncertainty budgets: their arithmetic, and that they bound the error of a known power trace."""

from __future__ import annotations

import math
import random

import pytest
from _scripted import ClockedSensor, FakeClock, Timeline

from harness.agent import uncertainty as u
from harness.agent.readings import counter_period_s, counter_updates, halves
from harness.agent.sensors.base import WindowReading, trapezoid_energy_j


def test_terms_combine_random_in_quadrature_and_systematic_linearly() -> None:
    a = u.Budget(100.0, {"sampling_interval": 3.0}, {u.ACCURACY: 1.0})
    b = u.Budget(50.0, {"sampling_interval": 4.0}, {u.ACCURACY: 2.0})
    s = a + b
    assert s.value == 150.0
    assert s.random["sampling_interval"] == pytest.approx(5.0)
    assert s.systematic[u.ACCURACY] == pytest.approx(3.0)
    r = s.to_schema()
    assert r.expanded == pytest.approx(2 * math.sqrt(25 + 9))
    assert r.expanded_random == pytest.approx(10.0)
    assert r.relative == pytest.approx(r.expanded / 150)
    assert r.dominant == "sampling_interval" and r.coverage_factor == 2.0
    half = s.scaled(0.5)
    assert half.value == 75.0 and half.random["sampling_interval"] == pytest.approx(2.5)


def test_edge_terms_of_devices_in_one_window_add_linearly() -> None:
    # every device's counter is read at the same edges: a load change there moves all alike
    a = u.Budget(100.0, {"counter_resolution": 3.0, "sampling_averaging": 1.0})
    b = u.Budget(50.0, {"counter_resolution": 4.0, "sampling_averaging": 2.0})
    s = a + b
    assert s.random["counter_resolution"] == pytest.approx(7.0)
    assert s.random["sampling_averaging"] == pytest.approx(3.0)


def test_the_sensor_gain_error_is_taken_on_a_difference_too() -> None:
    energy = u.Budget(1000.0, {"counter_resolution": 2.0}).gain()
    idle = u.Budget(20.0, {"counter_resolution": 0.1, "baseline_drift": 0.2})
    dynamic = u.above_baseline(energy, idle, 30.0)
    assert dynamic.value == pytest.approx(400.0)
    assert dynamic.systematic[u.ACCURACY] == pytest.approx(u.SENSOR_ACCURACY / math.sqrt(3) * 400)
    assert dynamic.random["baseline"] == pytest.approx(30 * math.hypot(0.1, 0.2))
    assert dynamic.random["counter_resolution"] == 2.0


def _counter_reading(sensor: ClockedSensor, clock: FakeClock, t0: float, t1: float) -> WindowReading:
    clock.now = t0
    sensor.begin(100)
    clock.now = t1
    return sensor.end()


def test_the_counter_budget_bounds_the_error_of_stale_edge_reads() -> None:
    """Over random traces, counter phases and windows, |reported - truth| <= expanded."""
    rng = random.Random(7)
    worst = 0.0
    for _ in range(300):
        timeline = Timeline(90.0)
        t = 0.0
        while t < 40:
            t += rng.uniform(0.005, 0.5)
            timeline.set(t, rng.choice([90.0, 250.0, 400.0, 700.0]))
        clock = FakeClock()
        period = rng.choice([0.001, 0.02, 0.1])
        sensor = ClockedSensor(clock, timeline, period_s=period, phase_s=rng.uniform(0, period))
        t0 = rng.uniform(1, 5)
        reading = _counter_reading(sensor, clock, t0, t0 + rng.uniform(1, 30))
        budget = u.energy_budget(reading, "gpu0")
        assert budget is not None
        error = abs(budget.value - sensor.truth(0))
        random_part = u.COVERAGE_FACTOR * budget.random_standard()
        assert error <= random_part, (period, error, random_part)
        worst = max(worst, error / random_part)
    assert worst > 0.05  # the bound is not vacuous: some windows come close to it


def test_integrated_power_budget_bounds_the_trapezoid_error() -> None:
    rng = random.Random(3)
    for _ in range(100):
        timeline = Timeline(100.0)
        for k in range(1, 60):
            timeline.set(k * 0.37 + rng.uniform(0, 0.2), rng.uniform(80, 600))
        clock = FakeClock()
        sensor = ClockedSensor(clock, timeline)
        reading = _counter_reading(sensor, clock, 2.0, 2.0 + rng.uniform(3, 15))
        rows = reading.device_samples("gpu0")
        energy = trapezoid_energy_j([(r["t_s"], r["power_w"]) for r in rows])
        assert energy is not None
        reading.energy_j["gpu0"] = energy
        reading.methods["gpu0"] = "nvml_power_integration"
        budget = u.energy_budget(reading, "gpu0")
        assert budget is not None
        assert set(budget.random) == {"sampling_interval", "sampling_averaging",
                                      "sampling_part_time"}
        bound = u.COVERAGE_FACTOR * budget.random["sampling_interval"]
        assert abs(energy - sensor.truth(0)) <= bound * 1.0001


def test_counter_updates_and_period_from_the_samples() -> None:
    rows = [{"t_s": i * 0.1, "energy_j": float(i // 3)} for i in range(31)]  # a change per 0.3 s
    assert counter_updates(rows) == 10
    assert counter_period_s(rows) == pytest.approx(0.3)
    assert counter_updates([{"t_s": 0.0, "energy_j": None}]) is None
    assert counter_period_s([{"t_s": i * 0.1, "energy_j": 5.0} for i in range(5)]) is None


def test_halves_from_the_counter_and_from_power_samples() -> None:
    rows = [{"t_s": float(i), "energy_j": 100.0 * i if i <= 5 else 500 + 200.0 * (i - 5),
             "power_w": 100.0 if i < 5 else 200.0} for i in range(11)]
    by_counter = halves(rows, 1500.0, 10.0)
    assert by_counter is not None and by_counter.source == "counter"
    assert (by_counter.first_w, by_counter.second_w) == (100.0, 200.0)
    assert by_counter.difference == pytest.approx(1.0)
    for r in rows:
        r["energy_j"] = None
    by_power = halves(rows, None, 10.0)
    assert by_power is not None and by_power.source == "power samples"
    assert (by_power.first_w, by_power.second_w) == (100.0, 200.0)


def test_peak_budget_covers_what_falls_between_ticks() -> None:
    samples = [{"tick": i, "device": "gpu0", "power_w": p}
               for i, p in enumerate([100.0, 400.0, 380.0, 120.0])]
    budget = u.peak_budget(samples, ["gpu0"], 400.0)
    assert budget.random["sampling_interval"] == pytest.approx(300 / math.sqrt(3))
    assert budget.systematic[u.ACCURACY] == pytest.approx(0.05 / math.sqrt(3) * 400)
