"""Every energy figure against a known truth: the real protocol, sensors, metrics and PyTorch
engine (the tiny model on the CPU) drive simulated GPUs whose true power the simulator
integrates itself; each reported figure must lie within its own stated uncertainty of that
truth (issue 11, item 2).

Six traces: constant power; idle-heavy (idle power close to busy power, so the baselines carry
the dynamic figures); prefill-heavy (long prompts, prefill drawing most); 8 GPUs under tensor
parallelism (with a spread between boards and a sensor bias); a fast (1 ms) counter; and a
part-time power sensor with no energy counter (energy from integrated, averaged readings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.agent import protocol
from harness.config.experiment import Experiment
from harness.models import write_tiny_model
from harness.results.energy import Uncertainty
from harness.results.schema import ExperimentResult, GpuLibrary, RunInfo, RunSpec
from harness.testing.simgpu.config import SimulatedGpus, StatePower
from harness.testing.simgpu.timeline import Timeline
from harness.testing.simgpu.truth import TRUTH_FILE, DeviceTruth, Truth, measured_uuids, read_truth

pytestmark = pytest.mark.slow

#: a short protocol: every phase a second or two, sampled every 20 ms
MEASUREMENT = {
    "warmup_batches": 1, "baseline_s": 1.0, "loaded_idle_s": 1.0, "min_window_s": 1.5,
    "gpu_min_window_s": 1.5, "min_counter_updates": 10, "max_window_s": 30,
    "sample_interval_ms": 20, "prefill_split": True,
}


@dataclass(frozen=True)
class Trace:
    """One simulated setting: the GPUs and the workload that drives them."""

    name: str
    gpus: SimulatedGpus
    workload: dict[str, Any]
    batch_size: int = 2


TRACES = [
    Trace("constant", SimulatedGpus(power_w=StatePower(no_context=300, loaded_idle=300,
                                                       prefill=300, decode=300)),
          {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8}),
    Trace("idle_heavy", SimulatedGpus(power_w=StatePower(no_context=180, loaded_idle=200,
                                                         prefill=240, decode=225)),
          {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8}),
    Trace("prefill_heavy", SimulatedGpus(power_w=StatePower(no_context=60, loaded_idle=110,
                                                            prefill=700, decode=250)),
          {"num_prompts": 4, "input_tokens": 256, "output_tokens": 2}),
    Trace("tensor_parallel_8", SimulatedGpus(count=8, per_run=8, device_spread=0.2,
                                             sensor_bias=0.03),
          {"num_prompts": 4, "input_tokens": 32, "output_tokens": 8}),
    Trace("fast_counter", SimulatedGpus(counter_period_ms=1.0),
          {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8}),
    Trace("part_time_sensor", SimulatedGpus(energy_counter=False, power_sensor_duty=0.25,
                                            power_average_s=1.0, sensor_bias=-0.02),
          {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8}),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("truth") / "tiny", layers=1, hidden_size=64)


def run_trace(trace: Trace, model: Path, out: Path) -> tuple[ExperimentResult, Truth]:
    """Run the real protocol in this process against the trace's simulated GPUs."""
    exp = Experiment(model=str(model), backend="pytorch", device="cpu", precision="fp32",
                     batch_size=trace.batch_size, workload={**trace.workload, "seed": 5},
                     measurement=MEASUREMENT)
    uuids = [trace.gpus.uuid(i) for i in range(trace.gpus.per_run or 1)]
    spec = RunSpec(
        run=RunInfo(study="truth", experiment_id=exp.id, cycle=1, run_id=trace.name),
        experiment=exp, model_path=str(model), gpu_uuids=uuids,
        gpu_library=GpuLibrary(kind="simulated", simulated=trace.gpus,
                               truth_file=str(out / TRUTH_FILE)),
    )
    result = protocol.run(spec, out)
    return result, read_truth(out / TRUTH_FILE)


def _time_in(device: DeviceTruth, state: str, t0: float, t1: float) -> float:
    return sum(b - a for a, b, s in device.state_intervals(t0, t1) if s == state)


def _sensor_peak(device_truths: list[DeviceTruth], config: SimulatedGpus, t0: float,
                 t1: float) -> float:
    """The highest summed reading a perfect sampler could have taken: the sensor's own
    average (trailing, part-time) of the true power, on a 5 ms grid over the window."""
    timelines = []
    for device in device_truths:
        line = Timeline()
        for a, _, p in device.segments:
            line.step(a, p)
        timelines.append((line, device.start_s))
    peak, t = 0.0, t0
    while t <= t1:
        total = 0.0
        for line, start in timelines:
            a = max(start, t - config.power_average_s) if config.power_average_s else t
            mean = (line.observed_mean(a, t, config.power_sensor_period_ms / 1000,
                                       config.power_sensor_duty) if t > a else line.power(t))
            total += mean if mean is not None else line.power(t)
        peak, t = max(peak, total), t + 0.005
    return peak


def truths(result: ExperimentResult, truth: Truth) -> dict[str, float]:
    """The true value of every figure the result reports, over the result's own windows."""
    devices = [truth.device(u) for u in measured_uuids(result).values()]
    edges = result.energy.phase_edges_s
    w0, w1 = edges["window"]
    i0, i1 = edges["idle"]
    l0, l1 = edges["loaded_idle"]
    energy = sum(d.energy_between(w0, w1) for d in devices)
    loaded = sum(d.mean_power_w(l0, l1) for d in devices)
    window_s = result.energy.window_s or (w1 - w0)
    dynamic = energy - loaded * window_s
    prefill = sum(
        d.energy_by_state(w0, w1).get("prefill", 0.0)
        - d.mean_power_w(l0, l1) * _time_in(d, "prefill", w0, w1)
        for d in devices
    )
    tokens = result.tokens
    found = {
        "energy_j": energy,
        "mean_power_w": energy / window_s,
        "idle_power_w": sum(d.mean_power_w(i0, i1) for d in devices),
        "loaded_idle_power_w": loaded,
        "dynamic_energy_j": dynamic,
        "j_per_output_token": energy / tokens.output_tokens,
        "j_per_token": energy / (tokens.input_tokens + tokens.output_tokens),
        "j_per_request": energy / tokens.requests,
        "peak_power_w": _sensor_peak(devices, truth.config, w0, w1),
        "prefill_energy_j": prefill,
        "decode_energy_j": dynamic - prefill,
    }
    return found


def reported(result: ExperimentResult) -> dict[str, tuple[float | None, Uncertainty | None]]:
    """Each figure the result reports, with the uncertainty it states."""
    e, p = result.energy, result.prefill
    out = {name: (getattr(e, name), e.uncertainty.get(name)) for name in (
        "energy_j", "mean_power_w", "idle_power_w", "loaded_idle_power_w", "dynamic_energy_j",
        "j_per_output_token", "j_per_token", "j_per_request", "peak_power_w")}
    out["prefill_energy_j"] = (p.prefill_energy_j, p.uncertainty.get("prefill_energy_j"))
    out["decode_energy_j"] = (p.decode_energy_j, p.uncertainty.get("decode_energy_j"))
    return out


@pytest.mark.parametrize("trace", TRACES, ids=[t.name for t in TRACES])
def test_every_figure_is_within_its_stated_uncertainty_of_the_truth(
    trace: Trace, tiny: Path, tmp_path: Path
) -> None:
    result, truth = run_trace(trace, tiny, tmp_path / trace.name)
    assert result.energy.energy_method == "simulated"
    assert len(result.energy.devices) == (trace.gpus.per_run or 1)
    expected = truths(result, truth)
    outside, missing = [], []
    for name, (value, u) in reported(result).items():
        if value is None or u is None:
            missing.append(name)
            continue
        error = abs(value - expected[name])
        if error > u.expanded + 1e-9:
            outside.append(f"{name}: reported {value:.6g} ± {u.expanded:.3g} ({u.dominant}), "
                           f"truth {expected[name]:.6g}, off by {error:.3g}")
    assert missing == [], f"{trace.name}: figures without a value or an uncertainty"
    assert outside == [], f"{trace.name}:\n" + "\n".join(outside)
