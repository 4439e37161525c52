"""The protocol's steps on a scripted engine and a clocked sensor (issue 11, items 3b and 3d-3g).

Everything runs on one fake clock: the engine moves a power timeline, the sensor integrates it
exactly and reads its counter as a GPU would (up to one update stale at each edge). So every
figure can be compared with the truth, and with the uncertainty the result states.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from _scripted import (
    DECODE_W,
    LOADED_W,
    PREFILL_W,
    PRELOAD_W,
    ClockedSensor,
    FakeClock,
    ScriptedEngine,
    Timeline,
    gpu_experiment,
    patch_clock,
    quiet_host,
    spec_for,
)

from harness.agent import protocol
from harness.errors import RunFailure, UserInputError
from harness.results.reasons import FailureReason
from harness.results.schema import ExperimentResult


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    patch_clock(monkeypatch, fake)
    return fake


def run(tmp_path: Path, clock: FakeClock, exp=None, *, sensor_kw=None, **engine_kw):
    exp = exp or gpu_experiment()
    timeline = Timeline()
    sensor = ClockedSensor(clock, timeline, **(sensor_kw or {}))
    engine = ScriptedEngine(exp, clock, timeline, **{"uuids": [sensor.uuid], **engine_kw})
    result = protocol.run(spec_for(exp), tmp_path, sensor=sensor, backend=engine,
                          host=quiet_host(tmp_path))
    return result, sensor, engine


def codes(result: ExperimentResult) -> list[str]:
    return [w.code for w in result.warnings]


def within(value: float | None, truth: float, uncertainty) -> bool:
    assert value is not None and uncertainty is not None
    return abs(value - truth) <= uncertainty.expanded


# --- 3d baselines ------------------------------------------------------------------------------


def test_dynamic_energy_is_against_loaded_idle_and_both_idles_are_reported(tmp_path, clock):
    result, sensor, _ = run(tmp_path, clock, sync_s=0.02)
    e = result.energy
    # windows: pre-load idle, loaded idle, main, prefill
    pre_truth = sensor.truth(0) / (sensor.windows[0][1] - sensor.windows[0][0])
    loaded_truth = sensor.truth(1) / (sensor.windows[1][1] - sensor.windows[1][0])
    assert pre_truth == pytest.approx(PRELOAD_W) and loaded_truth == pytest.approx(LOADED_W)
    assert within(e.idle_power_w, PRELOAD_W, e.uncertainty["idle_power_w"])
    assert within(e.loaded_idle_power_w, LOADED_W, e.uncertainty["loaded_idle_power_w"])
    window_s = e.window_s
    truth = sensor.truth(2)
    assert within(e.energy_j, truth, e.uncertainty["energy_j"])
    assert within(e.dynamic_energy_j, truth - LOADED_W * window_s,
                  e.uncertainty["dynamic_energy_j"])
    dev = e.devices[0]
    assert dev.dynamic_energy_j == pytest.approx(
        dev.energy_j - dev.loaded_idle_power_w * window_s)
    assert e.dynamic_energy_j == pytest.approx(dev.dynamic_energy_j)
    assert result.timings.loaded_idle_s == pytest.approx(10.0)
    assert "baseline_too_short" not in codes(result)


def test_a_short_gpu_baseline_is_named(tmp_path, clock):
    result, _, _ = run(tmp_path, clock, gpu_experiment(baseline_s=2, loaded_idle_s=3))
    short = [w for w in result.warnings if w.code == "baseline_too_short"]
    assert [w.phase for w in short] == ["idle", "loaded_idle"]


def test_a_gpu_still_cooling_at_the_baseline_is_named(tmp_path, clock):
    start = clock.now
    result, _, _ = run(tmp_path, clock, sensor_kw={"temperature": lambda t: max(40.0, 70 - (t - start))})
    hot = [w for w in result.warnings if w.code == "baseline_hot"]
    assert hot and hot[0].phase == "idle"


# --- 3e steady state -----------------------------------------------------------------------------


def test_gpu_window_lasts_gpu_min_window_s_and_counts_counter_updates(tmp_path, clock):
    result, _, _ = run(tmp_path, clock)
    s = result.steady_state
    assert result.energy.window_s >= 30.0
    assert s.target_s == 30.0 and s.ended_by == "target"
    assert s.verdict == "steady" and s.difference is not None and s.difference <= 0.05
    assert s.counter_updates is not None and s.counter_updates >= 100
    assert result.energy.devices[0].counter_update_period_s == pytest.approx(0.1, rel=0.05)


def test_a_slow_counter_makes_the_window_longer(tmp_path, clock):
    result, _, _ = run(tmp_path, clock, sensor_kw={"period_s": 0.5})
    s = result.steady_state
    assert s.counter_target_s == pytest.approx(50.0, rel=0.05)  # 100 updates at 0.5 s
    assert result.energy.window_s >= s.counter_target_s
    assert "too_few_counter_updates" not in codes(result)


def test_window_too_short_fires_when_the_cap_ends_the_window(tmp_path, clock):
    result, _, _ = run(tmp_path, clock, gpu_experiment(max_window_s=5))
    assert result.steady_state.ended_by == "cap"
    assert result.energy.window_s < 30.0
    assert "window_too_short" in codes(result)
    assert "too_few_counter_updates" in codes(result)


def test_power_that_drifts_across_the_window_is_not_steady(tmp_path, clock):
    start = clock.now
    result, _, _ = run(tmp_path, clock, decode_w=lambda t: DECODE_W + 4.0 * (t - start))
    assert result.steady_state.verdict == "not_steady"
    assert "not_steady" in codes(result)


def test_warmup_until_steady_waits_for_power_to_settle(tmp_path, clock):
    start = clock.now

    def settling(t: float) -> float:  # decays towards DECODE_W over a minute or two
        return DECODE_W + 200.0 * 0.97 ** (t - start)

    exp = gpu_experiment(warmup_until_steady=True, warmup_settle_s=5, steady_tolerance=0.02)
    result, _, _ = run(tmp_path, clock, exp, decode_w=settling)
    w = result.warmup
    assert w.until_steady and w.settled is True
    assert len(w.settle_power_w) >= 3 and w.settle_s > 10
    p = w.settle_power_w
    assert abs(p[-1] - p[-2]) / p[-2] <= 0.02 < abs(p[1] - p[0]) / p[0]


def test_warmup_until_steady_is_capped(tmp_path, clock):
    start = clock.now
    exp = gpu_experiment(warmup_until_steady=True, warmup_settle_s=5, warmup_max_s=20)
    result, _, _ = run(tmp_path, clock, exp, decode_w=lambda t: DECODE_W + 30.0 * (t - start))
    assert result.warmup.settled is False and result.warmup.settle_reason
    assert 20 <= result.warmup.settle_s < 30


# --- 3f prefill split ----------------------------------------------------------------------------


def test_prefill_split_on_dynamic_energy_ignores_host_gaps(tmp_path, clock):
    result, sensor, engine = run(tmp_path, clock, sync_s=0.3)
    p, t = result.prefill, result.tokens
    batches = 2
    prefill_truth = (PREFILL_W - LOADED_W) * 0.05 * batches * t.iterations
    decode_truth = (DECODE_W - LOADED_W) * 0.01 * 4 * batches * t.iterations
    assert p.measured and p.basis == "dynamic"
    assert within(p.prefill_energy_j, prefill_truth, p.uncertainty["prefill_energy_j"])
    assert within(p.decode_energy_j, decode_truth, p.uncertainty["decode_energy_j"])
    # the old split (total energy of the prefill passes) charged idle power, gaps included
    total_prefill = sensor.truth(3) * t.iterations / p.prefill_iterations
    assert total_prefill == pytest.approx(prefill_truth + LOADED_W * p.prefill_window_s, rel=0.01)
    # two synchronisations of 0.3 s per window, outside every generate() call
    window_s = sensor.windows[3][1] - sensor.windows[3][0]
    assert p.host_overhead_share == pytest.approx(0.3 / window_s, rel=1e-6)
    assert p.prefill_engine_s == pytest.approx(0.05 * batches * t.iterations, rel=1e-6)
    assert p.device_idle_share is not None and 0 < p.device_idle_share < 1


def test_prefill_cost_that_varies_from_call_to_call_is_in_the_budget(tmp_path, clock):
    rng = random.Random(5)
    result, sensor, engine = run(tmp_path, clock, prefill_s=lambda: rng.uniform(0.02, 0.08))
    p = result.prefill
    t0, t1 = sensor.windows[2]
    truth = (PREFILL_W - LOADED_W) * engine.busy_s("prefill", t0, t1)
    budget = p.uncertainty["prefill_energy_j"]
    assert "prefill_repeatability" in [t.name for t in budget.terms]
    assert within(p.prefill_energy_j, truth, budget)
    decode = (DECODE_W - LOADED_W) * engine.busy_s("decode", t0, t1)
    assert within(p.decode_energy_j, decode, p.uncertainty["decode_energy_j"])


def test_prefill_split_is_unavailable_for_engines_that_interleave(tmp_path, clock):
    why = "a batch's prompts exceed one scheduler step"
    result, sensor, _ = run(tmp_path, clock, interleaving=why)
    assert not result.prefill.measured
    assert result.prefill.reason == f"unavailable: {why}"
    assert len(sensor.windows) == 3  # no prefill window was measured


# --- 3g latency clocks -----------------------------------------------------------------------------


def test_tokens_delivered_together_are_one_arrival(tmp_path, clock):
    result, _, _ = run(tmp_path, clock, burst=2)  # 5 tokens arrive as 2 + 2 + 1
    lat = result.latency
    assert lat.itl.n == result.tokens.requests * 2  # 3 arrivals, 2 gaps each
    assert lat.itl.mean_s == pytest.approx((0.02 + 0.01) / 2)  # never a zero gap in a burst
    # per token after the first: from the first burst's arrival to the last one's
    assert lat.tpot.mean_s == pytest.approx(3 * 0.01 / 4)
    assert lat.ttft.mean_s == pytest.approx(0.05 + 0.01)  # the first burst ends after a step
    assert (lat.timestamp_source, lat.clock) == ("engine_step", "the fake clock")
    first = json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[0])
    assert first["arrivals"] == 3 and first["itl_s"] == pytest.approx([0.02, 0.01])


# --- 3i throughput and energy over one window -------------------------------------------------------


def test_throughput_and_energy_share_the_sensor_window(tmp_path, clock):
    result, sensor, _ = run(tmp_path, clock, sync_s=0.5)
    t0, t1 = sensor.windows[2]
    assert result.timings.window_s == result.energy.window_s == pytest.approx(t1 - t0)
    assert result.throughput.output_tokens_per_s == pytest.approx(
        result.tokens.output_tokens / (t1 - t0))


# --- 3b device identity --------------------------------------------------------------------------


def test_a_device_mismatch_fails_the_run_naming_both_lists(tmp_path, clock):
    with pytest.raises(RunFailure) as caught:
        run(tmp_path, clock, uuids=["GPU-ffff0000-9999"])
    assert caught.value.reason == FailureReason.DEVICE_MISMATCH
    assert "GPU-ffff0000-9999" in str(caught.value) and "GPU-0000aaaa-1111" in str(caught.value)


def test_uuids_match_without_the_prefix_and_case(tmp_path, clock):
    result, _, _ = run(tmp_path, clock, uuids=["0000AAAA-1111"])
    assert result.environment["device_check"]["verdict"] == "match"
    unknown, _, _ = run(tmp_path / "b", clock, uuids=None)
    check = unknown.environment["device_check"]
    assert check["verdict"] == "unknown" and check["sensor_uuids"] == ["GPU-0000aaaa-1111"]


# --- prompts before the model (issue 17, item 2) ------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such prompts file"),
    ('{"prompt": "a"}\nnot json\n', "line 2: not JSON"),
    ('{"prompt": 3}\n', "line 1: no \"prompt\" string"),
    ('{"prompt": "a"}\n{"prompt": "  "}\n', "has 1 usable prompts, the workload asks for 4"),
])
def test_a_bad_prompts_file_fails_before_the_engine_loads(tmp_path, clock, content, message):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_text(content)
    exp = gpu_experiment().model_copy(update={"workload": gpu_experiment().workload.model_copy(
        update={"dataset": str(path)})})
    timeline = Timeline()
    sensor = ClockedSensor(clock, timeline)
    engine = ScriptedEngine(exp, clock, timeline)
    with pytest.raises(UserInputError, match=message):
        protocol.run(spec_for(exp), tmp_path, sensor=sensor, backend=engine,
                     host=quiet_host(tmp_path))
    assert engine.log == [] and sensor.windows == []  # no load, no baseline


def test_a_good_prompts_file_is_encoded_after_the_load(tmp_path, clock):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(6)))
    base = gpu_experiment()
    exp = base.model_copy(update={"workload": base.workload.model_copy(
        update={"dataset": str(path)})})
    result, _, engine = run(tmp_path, clock, exp)
    assert engine.log[0] == "load" and result.tokens.requests % 4 == 0


@pytest.mark.parametrize("info", [{"engine": "scripted"}, {"engine": "scripted",
                                                            "engine_version": ""}])
def test_an_engine_whose_info_lacks_its_version_fails_the_run(tmp_path, clock, monkeypatch, info):
    # reports name each run's engine version from here; a backend must say it
    from _scripted import ScriptedEngine

    monkeypatch.setattr(ScriptedEngine, "info", lambda self: info)
    with pytest.raises(RunFailure, match="info\\(\\) lacks engine_version") as e:
        run(tmp_path, clock)
    assert e.value.reason == FailureReason.ENGINE_ERROR
