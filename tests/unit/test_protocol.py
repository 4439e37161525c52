"""The measurement protocol on the tiny model with a fake of the Sensor interface.

The real sensors are tested on their own (test_sensors_nvml.py, test_sensors_rapl.py); here a
sensor with known power shows that the protocol turns readings into the right figures. The
backend is the real PyTorch one, except in the timing tests, where a scripted backend and a
fake clock make warmup and window decisions deterministic.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from _scripted import FakeClock, patch_clock, quiet_host

from harness.agent import baseline, files, protocol, warmup, window
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.sensors.null import UnavailableSensor
from harness.backends.engine import Engine, RequestTiming
from harness.backends.spec import BackendOptions, BackendSpec
from harness.config.experiment import Experiment, Measurement
from harness.models import write_tiny_model
from harness.results.schema import ExperimentResult, RunInfo, RunSpec

IDLE_W = 20.0
LOADED_IDLE_W = 40.0
LOAD_W = 100.0
INTERVAL_MS = 20
MEMORY_USED = 3 * 2**30


class KnownPowerSensor(Sensor):
    """A sensor whose device draws IDLE_W, then LOADED_IDLE_W, then LOAD_W in later windows."""

    method = "nvml_counter"

    def __init__(self, log: list[str] | None = None) -> None:
        self.log = log if log is not None else []
        self.windows = 0
        self._start = 0.0
        self.closed = False

    @property
    def devices(self) -> list[str]:
        return ["gpu0"]

    def begin(self, interval_ms: int) -> None:
        self.log.append("begin")
        self.interval_s = interval_ms / 1000
        self._start = time.perf_counter()

    def end(self) -> WindowReading:
        self.log.append("end")
        duration = time.perf_counter() - self._start
        power = [IDLE_W, LOADED_IDLE_W][self.windows] if self.windows < 2 else LOAD_W
        self.windows += 1
        n = int(duration / self.interval_s) + 1
        rows = [
            {
                "tick": i, "t_s": i * self.interval_s, "device": "gpu0", "power_w": power,
                "energy_j": power * i * self.interval_s, "temperature_c": 40.0,
                "memory_used_bytes": MEMORY_USED if power == LOAD_W else 2**20,
                "throttle_reasons": 0,
            }
            for i in range(n)
        ]
        return WindowReading(
            method="nvml_counter", duration_s=duration, energy_j={"gpu0": power * duration},
            samples=rows, methods={"gpu0": "nvml_counter"},
            gpu_processes={"gpu0": [os.getpid()]}, sampler_cpu_s=0.001,
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "sensor": "known-power", "method": self.method,
            "devices": [{"device": "gpu0", "uuid": "GPU-test", "power_limit_w": 300.0,
                         "persistence_mode": True, "mig_mode": False}],
        }

    def close(self) -> None:
        self.closed = True


def experiment(model: Path, **measurement: Any) -> Experiment:
    m = {"warmup_batches": 1, "baseline_s": 0.3, "loaded_idle_s": 0.3, "min_window_s": 0.4,
         "sample_interval_ms": INTERVAL_MS, "prefill_split": True, **measurement}
    return Experiment(
        model=str(model), backend="pytorch", device="cpu", precision="fp32", batch_size=2,
        workload={"num_prompts": 4, "input_tokens": 8, "output_tokens": 4, "seed": 3},
        measurement=Measurement(**m),
    )


def spec_for(exp: Experiment) -> RunSpec:
    return RunSpec(
        run=RunInfo(study="t", experiment_id=exp.id, cycle=1, run_id=f"{exp.id}-c1"),
        experiment=exp, model_path=exp.model,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny", layers=1, hidden_size=64)


@pytest.fixture(scope="module")
def measured(
    tiny: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ExperimentResult, Path, KnownPowerSensor]:
    out = tmp_path_factory.mktemp("run")
    sensor = KnownPowerSensor()
    result = protocol.run(spec_for(experiment(tiny)), out, sensor=sensor, host=quiet_host(out))
    return result, out, sensor


def test_energy_figures_follow_the_definitions(measured: tuple) -> None:
    result, _, sensor = measured
    e = result.energy
    assert sensor.closed
    assert e.energy_method == "nvml_counter"
    window_s = e.window_s
    assert window_s is not None and window_s >= 0.4
    assert e.energy_j == pytest.approx(LOAD_W * window_s)
    assert e.idle_power_w == pytest.approx(IDLE_W)
    assert e.loaded_idle_power_w == pytest.approx(LOADED_IDLE_W)
    assert e.dynamic_energy_j == pytest.approx((LOAD_W - LOADED_IDLE_W) * window_s)
    assert e.mean_power_w == pytest.approx(LOAD_W)
    assert e.peak_power_w == pytest.approx(LOAD_W)
    t = result.tokens
    assert e.j_per_output_token == pytest.approx(e.energy_j / t.output_tokens)
    assert e.j_per_token == pytest.approx(e.energy_j / (t.input_tokens + t.output_tokens))
    assert e.j_per_request == pytest.approx(e.energy_j / t.requests)
    assert e.wh_per_1k_requests == pytest.approx(e.energy_j / t.requests * 1000 / 3600)
    assert e.output_tokens_per_j == pytest.approx(t.output_tokens / e.energy_j)
    assert e.samples >= 10 and e.idle_samples >= 10 and e.loaded_idle_samples >= 10
    assert e.sample_interval_ms == INTERVAL_MS
    dev = e.devices[0]
    assert (dev.device, dev.energy_method, dev.idle_power_w) == ("gpu0", "nvml_counter", IDLE_W)
    assert dev.loaded_idle_power_w == pytest.approx(LOADED_IDLE_W)
    assert dev.peak_memory_used_bytes == MEMORY_USED


def test_window_repeats_whole_passes_and_counts_tokens(measured: tuple) -> None:
    result, _, _ = measured
    t = result.tokens
    assert t.requests == 4 * t.iterations
    assert t.input_tokens == 8 * t.requests and t.output_tokens == 4 * t.requests
    assert result.timings.window_s >= 0.4
    assert result.timings.window_s == result.energy.window_s  # one window: the sensor's edges
    assert result.throughput.output_tokens_per_s == pytest.approx(
        t.output_tokens / result.timings.window_s
    )
    assert result.warmup.batches == 1 and result.warmup.converged is None


def test_prefill_split_scales_the_prefill_window(measured: tuple) -> None:
    result, _, _ = measured
    p, e = result.prefill, result.energy
    assert p.measured and p.prefill_energy_method == "nvml_counter"
    assert p.prefill_iterations is not None and p.prefill_iterations >= 1
    scale = result.tokens.iterations / p.prefill_iterations
    assert p.prefill_window_s is not None and p.prefill_energy_j is not None
    # the fake draws LOAD_W in the prefill window too: dynamic energy = (power - loaded idle)
    # x scaled time, and decode is the rest of the main window's dynamic energy
    assert p.basis == "dynamic"
    assert p.prefill_energy_j == pytest.approx((LOAD_W - LOADED_IDLE_W) * p.prefill_window_s,
                                               rel=1e-3)
    assert p.decode_energy_j == pytest.approx(e.dynamic_energy_j - p.prefill_energy_j)
    assert p.prefill_j_per_input_token == pytest.approx(
        p.prefill_energy_j / result.tokens.input_tokens
    )
    assert p.decode_j_per_output_token == pytest.approx(
        p.decode_energy_j / result.tokens.output_tokens
    )
    assert p.prefill_window_s / scale > 0


def test_latency_from_per_token_timestamps(measured: tuple) -> None:
    result, out, _ = measured
    lat = result.latency
    assert lat.per_token_timestamps
    assert lat.e2e.n == lat.ttft.n == lat.tpot.n == result.tokens.requests
    assert lat.itl.n == result.tokens.requests * 3
    assert 0 < lat.ttft.p50_s <= lat.e2e.p50_s
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == result.tokens.requests
    first = json.loads(lines[0])
    assert first["output_tokens"] == 4 and len(first["itl_s"]) == 3


def test_timeseries_has_every_phase(measured: tuple) -> None:
    _, out, _ = measured
    with (out / "timeseries.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == files.TIMESERIES_COLUMNS
    assert {r["phase"] for r in rows} == {"idle", "loaded_idle", "window", "prefill"}


def test_result_is_written_valid_and_has_provenance(measured: tuple) -> None:
    result, out, _ = measured
    on_disk = ExperimentResult.model_validate_json((out / "result.json").read_text())
    assert on_disk.energy.energy_j == result.energy.energy_j
    env = result.environment
    assert env["sensor"]["devices"][0]["uuid"] == "GPU-test"
    assert env["harness_version"]
    assert "harness_git_revision" in env and env["harness_git_revision_source"]
    assert env["packages"]["torch"] and env["packages"]["pydantic"]
    assert env["cpu"]["logical_cores"] >= 1
    assert env["seeds"] == {"workload": 3}
    assert env["prompts_sha256"] == result.tokens.prompts_sha256
    assert len(result.tokens.prompts_sha256 or "") == 64
    c = result.compute
    assert c.non_embedding_params and c.flops and c.flops_per_s and c.flops_formula
    assert c.peak_memory_used_bytes == MEMORY_USED
    assert result.warnings == []


def test_blind_sensor_gives_unknown_energy_never_zero(tiny: Path, tmp_path: Path) -> None:
    sensor = UnavailableSensor("no powercap: test")
    result = protocol.run(
        spec_for(experiment(tiny, baseline_s=5, loaded_idle_s=5, min_window_s=0.1)), tmp_path,
        sensor=sensor, host=quiet_host(tmp_path),
    )
    e = result.energy
    assert e.energy_method == "unavailable" and e.unavailable_reason == "no powercap: test"
    for name in ("energy_j", "idle_power_w", "dynamic_energy_j", "mean_power_w",
                 "j_per_output_token", "j_per_token", "j_per_request", "output_tokens_per_j"):
        assert getattr(e, name) is None, name
    assert result.timings.baseline_s == 0.0  # no idle wait without a sensor
    assert result.timings.loaded_idle_s is None and e.loaded_idle_power_w is None
    assert e.uncertainty == {}
    assert result.prefill.measured and result.prefill.prefill_energy_j is None
    assert result.prefill.reason
    assert [w.code for w in result.warnings] == ["energy_unavailable"]
    assert result.latency.e2e.n == result.tokens.requests


# --- deterministic timing: a scripted backend on a fake clock ----------------------------------


class ScriptedBackend(Engine):
    """generate() takes the next scripted latency (per prompt when ``per_prompt``)."""

    spec = BackendSpec(name="scripted", options=BackendOptions, engine="tests:ScriptedBackend",
                       precisions={"cpu": ("fp32",)})

    def info(self) -> dict:
        return {"engine": "scripted", "engine_version": "0"}

    def __init__(self, clock: FakeClock, latencies: list[float], log: list[str] | None = None,
                 per_prompt: bool = False) -> None:
        self.clock = clock
        self.latencies = list(latencies)
        self.log = log if log is not None else []
        self.per_prompt = per_prompt

    def load(self, model_path: str) -> None: ...

    def vocab(self) -> tuple[int, list[int]]:
        return 100, []

    def encode(self, text: str) -> list[int]:
        return [1]

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        self.log.append("generate")
        start = self.clock.now
        step = self.latencies.pop(0) if self.latencies else 0.4
        self.clock.now += step * (len(prompts) if self.per_prompt else 1)
        return [RequestTiming(len(p), max_new_tokens, start, self.clock.now) for p in prompts]

    def synchronize(self) -> None:
        self.log.append("sync")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    patch_clock(monkeypatch, fake)
    return fake


WORK = [[[1] * 8] * 2, [[2] * 8] * 2]


def test_fixed_warmup_runs_the_given_batches(clock: FakeClock) -> None:
    backend = ScriptedBackend(clock, [1.0, 2.0, 3.0])
    warm = warmup.run_warmup(backend, WORK, Measurement(warmup_batches=3), 4)
    assert warm.batches == 3 and warm.converged is None and warm.target_cv is None
    assert warm.duration_s == pytest.approx(6.0)


def test_cv_warmup_stops_when_latency_settles(clock: FakeClock) -> None:
    backend = ScriptedBackend(clock, [5.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    m = Measurement(warmup_until_cv=0.05, warmup_max_batches=20)
    warm = warmup.run_warmup(backend, WORK, m, 4)
    assert warm.converged is True
    assert warm.batches == 7  # the last five latencies are all 1.0 only after batch 7
    assert warm.final_cv == pytest.approx(0.0)


def test_cv_warmup_is_capped(clock: FakeClock) -> None:
    backend = ScriptedBackend(clock, [1.0, 2.0] * 10)
    m = Measurement(warmup_until_cv=0.05, warmup_max_batches=8)
    warm = warmup.run_warmup(backend, WORK, m, 4)
    assert warm.converged is False and warm.batches == 8
    assert warm.final_cv is not None and warm.final_cv > 0.05


def test_cv_warmup_compares_batches_of_the_same_shape(clock: FakeClock) -> None:
    # two full batches and a half one: latency per prompt is steady, per batch it is not
    work = [[[1] * 8] * 2, [[2] * 8] * 2, [[3] * 8]]
    backend = ScriptedBackend(clock, [0.5] * 30, per_prompt=True)
    m = Measurement(warmup_until_cv=0.05, warmup_max_batches=30)
    warm = warmup.run_warmup(backend, work, m, 4)
    assert warm.converged is True


def test_window_syncs_at_both_edges_and_repeats_passes(clock: FakeClock) -> None:
    log: list[str] = []
    backend = ScriptedBackend(clock, [0.4] * 10, log)
    sensor = KnownPowerSensor(log)
    sensor.windows = 1
    m = Measurement(min_window_s=1.0, sample_interval_ms=100)
    target = window.window_target(m, "cpu", None)
    measured = window.measure_window(backend, sensor, WORK, 100, 4, target)
    assert measured.iterations == 2  # one pass is 0.8 s, shorter than min_window_s
    assert measured.duration_s == pytest.approx(1.6)
    assert measured.generate_s == pytest.approx(1.6) and measured.ended_by == "target"
    assert log[:2] == ["sync", "begin"]
    assert log[-2:] == ["sync", "end"]
    assert log.count("generate") == 4
    assert len(measured.requests) == 8


def test_idle_baseline_sleeps_for_baseline_s(clock: FakeClock) -> None:
    sensor = KnownPowerSensor()
    idle = baseline.measure_baseline(sensor, 7, 100)
    assert clock.now == pytest.approx(107.0)
    assert idle is not None
    assert idle.power_w("gpu0") == pytest.approx(IDLE_W)
    blind = baseline.measure_baseline(UnavailableSensor("x"), 7, 100)
    assert blind is None
    assert clock.now == pytest.approx(107.0)
