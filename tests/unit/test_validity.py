"""Each validity warning, triggered once from an otherwise clean run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.agent import validity
from harness.agent.sensors.base import Sensor, WindowReading
from harness.config.experiment import Experiment, Measurement
from harness.results.energy import DeviceEnergy, Energy, PrefillSplit
from harness.results.schema import (
    ExperimentResult,
    Interference,
    RunInfo,
    SteadyState,
    Throughput,
    Timings,
    Tokens,
    Warmup,
)

OWN_PID = 1234
IDLE_W = 80.0
POWER_W = 250.0
WINDOW_S = 12.0


class InfoSensor(Sensor):
    """A sensor that only answers what validity asks: availability, devices, provenance."""

    def __init__(self, available: bool = True, **device: Any) -> None:
        self.method = "nvml_counter" if available else "unavailable"
        self.reason = None if available else "no NVML"
        self._device = {
            "device": "gpu0", "power_limit_w": 700.0, "persistence_mode": True,
            "mig_mode": False, **device,
        }

    @property
    def devices(self) -> list[str]:
        return ["gpu0"] if self.available else []

    def begin(self, interval_ms: int) -> None:
        raise AssertionError("not used")

    def end(self) -> WindowReading:
        raise AssertionError("not used")

    def provenance(self) -> dict[str, Any]:
        return {"method": self.method, "devices": [self._device] if self.available else []}


def samples(n: int = 20, temps: list[float] | None = None, throttle: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append({
            "tick": i, "t_s": i * WINDOW_S / (n - 1), "device": "gpu0", "power_w": POWER_W,
            "temperature_c": temps[i] if temps else 55.0,
            "throttle_reasons": throttle if i % 2 else 0x1,  # gpu_idle alone is harmless
        })
    return rows


def reading(duration_s: float = WINDOW_S, power_w: float = POWER_W, **kw: Any) -> WindowReading:
    base: dict[str, Any] = {
        "method": "nvml_counter",
        "duration_s": duration_s,
        "energy_j": {"gpu0": power_w * duration_s},
        "samples": samples(),
        "methods": {"gpu0": "nvml_counter"},
        "gpu_processes": {"gpu0": [OWN_PID]},
    }
    base.update(kw)
    return WindowReading(**base)


@dataclass
class Case:
    """A clean run; a scenario changes one thing."""

    sensor: InfoSensor = field(default_factory=InfoSensor)
    phases: dict[str, WindowReading] = field(
        default_factory=lambda: {
            "idle": reading(power_w=IDLE_W, gpu_processes={"gpu0": []}),
            "window": reading(),
            "prefill": reading(),
        }
    )
    energy: Energy = field(
        default_factory=lambda: Energy(
            energy_method="nvml_counter", energy_j=POWER_W * WINDOW_S,
            devices=[DeviceEnergy(device="gpu0", idle_power_w=IDLE_W)],
        )
    )
    prefill: PrefillSplit = field(
        default_factory=lambda: PrefillSplit(measured=True, decode_energy_j=2000.0)
    )
    warmup: Warmup = field(default_factory=lambda: Warmup(batches=3))
    steady: SteadyState = field(default_factory=SteadyState)
    # a GPU run whose windows must last 10 s (the default 30 s would make WINDOW_S short)
    measurement: Measurement = field(
        default_factory=lambda: Measurement(min_window_s=10, gpu_min_window_s=10)
    )
    host: Interference = field(default_factory=Interference)

    def run(self) -> list[str]:
        result = ExperimentResult(
            run=RunInfo(study="s", experiment_id="e", cycle=1, run_id="e-c1"),
            experiment=Experiment(model="m", measurement=self.measurement),
            timings=Timings(window_s=WINDOW_S),
            tokens=Tokens(requests=8, input_tokens=800, output_tokens=800),
            throughput=Throughput(
                output_tokens_per_s=1.0, total_tokens_per_s=2.0, requests_per_s=0.1
            ),
            energy=self.energy, prefill=self.prefill, warmup=self.warmup,
            steady_state=self.steady, interference=self.host,
        )
        warnings = validity.check(result, self.phases, self.sensor, own_pid=OWN_PID)
        assert all(w.message for w in warnings)
        self.warnings = warnings
        return [w.code for w in warnings]


def short_window(c: Case) -> None:
    c.phases["window"] = reading(duration_s=5.0)


def few_samples(c: Case) -> None:
    c.phases["window"] = reading(samples=samples(n=5))


def stalled(c: Case) -> None:
    c.phases["window"] = reading(counter_stalled=["gpu0"])


def reset(c: Case) -> None:
    c.phases["window"] = reading(counter_resets=["gpu0"])


def drift(c: Case) -> None:
    c.phases["window"] = reading(samples=samples(temps=[50.0 + i for i in range(20)]))


def throttled(c: Case) -> None:
    c.phases["window"] = reading(samples=samples(throttle=0x4))


def above_limit(c: Case) -> None:
    c.phases["window"] = reading(power_w=800.0)


def below_idle(c: Case) -> None:
    c.phases["window"] = reading(power_w=60.0)


def persistence_off(c: Case) -> None:
    c.sensor = InfoSensor(persistence_mode=False)


def other_processes(c: Case) -> None:
    c.phases["window"] = reading(gpu_processes={"gpu0": [OWN_PID, 999]})


def mig(c: Case) -> None:
    c.sensor = InfoSensor(mig_mode=True)


def unavailable(c: Case) -> None:
    c.sensor = InfoSensor(available=False)
    c.energy = Energy(energy_method="unavailable", unavailable_reason="no NVML")
    blind = WindowReading(method="unavailable", duration_s=WINDOW_S, energy_j={})
    c.phases = {"window": blind, "prefill": blind}


def prefill_too_big(c: Case) -> None:
    c.prefill = PrefillSplit(measured=True, decode_energy_j=-12.0)


def warmup_unconverged(c: Case) -> None:
    c.warmup = Warmup(batches=20, final_cv=0.2, target_cv=0.05, converged=False)


def few_counter_updates(c: Case) -> None:
    rows = samples()
    for i, row in enumerate(rows):
        row["energy_j"] = float(i // 4)  # the counter changed 4 times in 20 samples
    c.phases["window"] = reading(samples=rows)


def not_steady(c: Case) -> None:
    c.steady = SteadyState(verdict="not_steady", first_half_power_w=200.0,
                           second_half_power_w=300.0, difference=0.5, tolerance=0.05)


def short_baseline(c: Case) -> None:
    c.phases["idle"] = reading(duration_s=5.0, power_w=IDLE_W, gpu_processes={"gpu0": []})


def hot_baseline(c: Case) -> None:
    c.phases["idle"] = reading(power_w=IDLE_W, gpu_processes={"gpu0": []},
                               samples=samples(temps=[60.0 - i * 0.5 for i in range(20)]))


def idle_high(c: Case) -> None:
    c.energy = Energy(energy_method="nvml_counter", energy_j=400.0 * WINDOW_S,
                      devices=[DeviceEnergy(device="gpu0", idle_power_w=300.0)])
    c.phases["window"] = reading(power_w=400.0)


def preload_above_loaded(c: Case) -> None:
    c.energy = Energy(energy_method="nvml_counter", energy_j=POWER_W * WINDOW_S,
                      devices=[DeviceEnergy(device="gpu0", idle_power_w=IDLE_W,
                                            loaded_idle_power_w=60.0)])


def contended(c: Case) -> None:
    c.host = Interference(cpu_count=8, other_cpu_share=0.6, own_wait_share=0.01)


SCENARIOS: dict[str, Callable[[Case], None]] = {
    "window_too_short": short_window,
    "too_few_samples": few_samples,
    "counter_not_advancing": stalled,
    "counter_reset": reset,
    "temperature_drift": drift,
    "throttling": throttled,
    "power_above_limit": above_limit,
    "power_below_idle": below_idle,
    "persistence_mode_off": persistence_off,
    "other_gpu_processes": other_processes,
    "mig_enabled": mig,
    "energy_unavailable": unavailable,
    "prefill_exceeds_total": prefill_too_big,
    "warmup_not_converged": warmup_unconverged,
    "too_few_counter_updates": few_counter_updates,
    "not_steady": not_steady,
    "baseline_too_short": short_baseline,
    "baseline_hot": hot_baseline,
    "idle_power_high": idle_high,
    "preload_idle_above_loaded": preload_above_loaded,
    "host_contention": contended,
}


def test_a_clean_run_has_no_warnings() -> None:
    assert Case().run() == []


@pytest.mark.parametrize("code", list(SCENARIOS))
def test_each_warning_is_triggered_once(code: str) -> None:
    case = Case()
    SCENARIOS[code](case)
    assert case.run() == [code]


def test_every_documented_code_has_a_scenario() -> None:
    documented = validity.__doc__ or ""
    for code in SCENARIOS:
        assert code in documented


def test_on_a_gpu_windows_must_also_last_gpu_min_window_s() -> None:
    case = Case()
    case.measurement = Measurement(min_window_s=10)  # gpu_min_window_s defaults to 30 s
    assert case.run() == ["window_too_short", "window_too_short"]
    assert "30 s" in case.warnings[0].message


def test_host_contention_from_run_queue_waits() -> None:
    case = Case()
    case.host = Interference(cpu_count=8, other_cpu_share=0.01, own_wait_share=0.5)
    assert case.run() == ["host_contention"]
    case.host = Interference(cpu_count=8, other_cpu_share=None, own_wait_share=None)
    assert case.run() == []


def test_warnings_name_the_phase() -> None:
    case = Case()
    case.phases["prefill"] = reading(duration_s=3.0)
    assert case.run() == ["window_too_short"]
    assert case.warnings[0].phase == "prefill"


@pytest.mark.parametrize(
    ("pids", "loaded", "expected"),
    [
        ([OWN_PID], True, (0, True)),
        ([OWN_PID, 7, 8], True, (2, True)),
        ([70001], True, (0, False)),  # only our context, seen under a host PID
        ([70001, 70002], True, (1, False)),
        ([70001], False, (1, True)),  # before the model loads, any process is another
        ([], False, (0, True)),
    ],
)
def test_foreign_pids(pids: list[int], loaded: bool, expected: tuple[int, bool]) -> None:
    assert validity.foreign_pids(pids, OWN_PID, loaded) == expected
