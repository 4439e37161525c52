"""Synthetic study folders with known effects, built from the real pydantic models."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from harness.config.study import Study
from harness.config.sweep import expand
from harness.results import manifest as mio
from harness.results.energy import DeviceEnergy, Energy, HostEnergy, Uncertainty
from harness.results.io import atomic_write_json
from harness.results.reasons import FailureReason
from harness.results.schema import (
    ExperimentResult,
    Latency,
    LatencyStats,
    RunError,
    RunInfo,
    RunSpec,
    Throughput,
    Timings,
    Tokens,
    Warning_,
)

PROMPTS = 8  # the workload's num_prompts
PROMPT_TOKENS = 16  # its input_tokens: each synthetic prompt's exact length
NEW_TOKENS = 8  # its output_tokens
ITERATIONS = 8  # passes over the prompts in each measured window
REQUESTS = PROMPTS * ITERATIONS
INPUT_TOKENS = REQUESTS * PROMPT_TOKENS
OUTPUT_TOKENS = REQUESTS * NEW_TOKENS
#: the engine (name, version) each backend's runs report
ENGINES = {"pytorch": ("transformers", "4.57.1"), "vllm": ("vllm", "0.32.0"),
           "tensorrt_llm": ("tensorrt_llm", "1.0.0")}
PROMPTS_SHA256 = "ab" * 32


def study_data(sweep: dict[str, list[Any]], cycles: int, name: str = "synth") -> dict[str, Any]:
    return {
        "name": name,
        "description": "Synthetic results with known effects.",
        "experiment": {
            "model": "models/tiny", "backend": "pytorch", "device": "cuda",
            "precision": "fp32", "batch_size": 1,
            "workload": {"num_prompts": PROMPTS, "input_tokens": PROMPT_TOKENS,
                         "output_tokens": NEW_TOKENS},
            "measurement": {"warmup_batches": 1, "baseline_s": 0, "min_window_s": 0.5},
        },
        "sweep": sweep,
        "execution": {"cycles": cycles, "order": "interleaved", "runner": "local"},
    }


def make_study(
    root: Path,
    *,
    sweep: dict[str, list[Any]],
    j_factors: dict[str, dict[Any, float]],
    tps_factors: dict[str, dict[Any, float]] | None = None,
    cycles: int = 3,
    noise: float = 0.02,
    seed: int = 0,
    energy: bool = True,
    failed: int = 0,
    pending: int = 0,
    timeseries: bool = True,
    extra_env: dict[str, Any] | None = None,
    experiment: dict[str, Any] | None = None,
    working_dir: Path | None = None,
    with_model: bool = False,
    host: HostKind = None,
) -> Path:
    """A finished (or partial) study folder whose true effects are the given factors.

    ``experiment`` fields replace the base experiment's; ``working_dir`` is recorded in the
    manifest as the folder the study ran from. ``with_model`` puts a folder that looks like
    the model (config.json and a weights file, contents unread) at models/tiny there, so that
    a resume's checks find it. ``host`` gives the runs a host part beside the GPUs
    (``synthetic_result``).

    J per output token = 1.0 x product of j_factors; throughput = 100 x product of tps_factors;
    each run's values are multiplied by exp(N(0, noise)).
    """
    rng = np.random.default_rng(seed)
    tps_factors = tps_factors or {}
    data = study_data(sweep, cycles)
    data["experiment"].update(experiment or {})
    study = Study.model_validate(data)
    plan = expand(study)
    study_dir = root / "synth-20260101T000000Z"
    study_dir.mkdir(parents=True)
    if with_model:
        model = (working_dir if working_dir is not None else root) / "models" / "tiny"
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (model / "model.safetensors").write_bytes(b"")
    (study_dir / "study.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    atomic_write_json(study_dir / "plan.json", plan)
    manifest = mio.new_manifest(plan, study_dir / "study.yaml",
                                working_dir=working_dir if working_dir is not None else root)
    manifest.runner = "local"
    manifest.runner_reason = "synthetic"
    params = {p.id: p.params for p in plan.experiments}
    n_runs = len(plan.runs)
    for i, run in enumerate(plan.runs):
        rec = manifest.record(run.run_id)
        run_dir = study_dir / "runs" / run.run_id
        if i >= n_runs - pending:
            continue
        run_dir.mkdir(parents=True)
        if i >= n_runs - pending - failed:
            rec.status, rec.reason, rec.message = "failed", FailureReason.AGENT_EXIT, "synthetic failure"
            atomic_write_json(run_dir / "error.json", RunError(
                run_id=run.run_id, reason="agent_exit", message="synthetic failure"))
            continue
        p = params[run.experiment_id]
        jpt = math.prod(j_factors.get(a, {}).get(v, 1.0) for a, v in p.items())
        tps = 100.0 * math.prod(tps_factors.get(a, {}).get(v, 1.0) for a, v in p.items())
        jpt *= math.exp(rng.normal(0, noise))
        tps *= math.exp(rng.normal(0, noise))
        result = synthetic_result(plan, run, jpt if energy else None, tps, extra_env, host)
        atomic_write_json(run_dir / "result.json", result)
        exp = plan.experiment(run.experiment_id)
        atomic_write_json(run_dir / "config.json", RunSpec(
            run=result.run, experiment=exp, model_path=str(root / exp.model), runner="local"))
        (run_dir / "requests.jsonl").write_text("".join(
            f'{{"iteration": {i // PROMPTS}, "input_tokens": {PROMPT_TOKENS}, '
            f'"output_tokens": {NEW_TOKENS}}}\n' for i in range(REQUESTS)))
        lines = ["phase,t_s,device,power_w,energy_j,temperature_c,sm_clock_mhz,mem_clock_mhz,"
                 "memory_used_bytes,utilization_gpu_pct,throttle_reasons"]
        if timeseries and energy:
            power = result.energy.mean_power_w
            lines += [f"window,{t * 0.1:.1f},gpu0,{power * (1 + 0.01 * (t % 3)):.3f},,60,,,,,"
                      for t in range(20)]
        (run_dir / "timeseries.csv").write_text("\n".join(lines) + "\n")
        (run_dir / "container.log").write_text("agent finished\n")
        rec.status = "done"
        rec.headline = {"output_tokens_per_s": tps}
    manifest.state = "complete" if failed == 0 and pending == 0 else "incomplete"
    mio.save(manifest, study_dir)
    return study_dir


#: a host part beside the GPUs: measured (RAPL), unavailable (with a reason), or none
HostKind = Literal["measured", "unavailable"] | None
HOST_W = 50.0  # the synthetic host's CPU package power
DRAM_W = 10.0  # its DRAM's
HOST_REASON = "no powercap: synthetic host"


def budget(value: float, relative: float = 0.04, dominant: str = "sensor_accuracy") -> Uncertainty:
    """A budget of ``relative`` x value (its random part half of it)."""
    return Uncertainty(expanded=relative * value, relative=relative,
                       expanded_random=relative * value / 2, dominant=dominant)


def synthetic_host(kind: HostKind, window_s: float) -> HostEnergy | None:
    """The host's CPU and DRAM over a window of ``window_s``, as ``kind`` says."""
    if kind is None:
        return None
    if kind == "unavailable":
        return HostEnergy(unavailable_reason=HOST_REASON, window_s=window_s)
    cpu, dram = HOST_W * window_s, DRAM_W * window_s
    return HostEnergy(
        energy_method="rapl", energy_j=cpu + dram, cpu_energy_j=cpu, dram_energy_j=dram,
        mean_power_w=HOST_W + DRAM_W, window_s=window_s,
        uncertainty={"energy_j": budget(cpu + dram, 0.06), "cpu_energy_j": budget(cpu, 0.06),
                     "dram_energy_j": budget(dram, 0.08)})


def synthetic_result(plan: Any, run: Any, jpt: float | None, tps: float,
                     extra_env: dict[str, Any] | None = None,
                     host: HostKind = None) -> ExperimentResult:
    exp = plan.experiment(run.experiment_id)
    window_s = OUTPUT_TOKENS / tps
    energy = Energy(energy_method="unavailable", unavailable_reason="no sensor in this test",
                    host=synthetic_host(host, window_s))
    if jpt is not None:
        energy_j = jpt * OUTPUT_TOKENS
        side = synthetic_host(host, window_s)
        total = energy_j if side is None else (
            energy_j + side.energy_j if side.energy_j is not None else None)
        peak = 1.1 * energy_j / window_s
        energy = Energy(
            energy_method="nvml_counter", energy_j=energy_j, mean_power_w=energy_j / window_s,
            peak_power_w=peak, j_per_output_token=jpt,
            j_per_token=energy_j / (OUTPUT_TOKENS + INPUT_TOKENS),
            j_per_request=energy_j / REQUESTS, output_tokens_per_j=1 / jpt, samples=20,
            devices=[DeviceEnergy(device="gpu0", energy_j=energy_j)],
            host=side, total_energy_j=total,
        )
        if host is not None:  # budgets, as a run of this harness states them
            energy.uncertainty = {"energy_j": budget(energy_j), "peak_power_w": budget(peak)}
            if total is not None:
                energy.uncertainty["total_energy_j"] = budget(total, 0.03, "host_sensor_accuracy")
    e2e = window_s / 8
    engine, version = ENGINES[exp.backend]
    return ExperimentResult(
        run=RunInfo(study=plan.study, experiment_id=run.experiment_id, cycle=run.cycle,
                    run_id=run.run_id),
        experiment=exp,
        backend_info={"engine": engine, "engine_version": version},
        environment={"python": "3.11", "platform": "synthetic", "harness_version": "0.1.0",
                     "cpu": {"model": "synthetic", "logical_cores": 2},
                     "packages": {"numpy": "2.0"},
                     **(extra_env or {})},
        timings=Timings(window_s=window_s),
        tokens=Tokens(requests=REQUESTS, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS,
                      iterations=ITERATIONS, prompts_sha256=PROMPTS_SHA256),
        throughput=Throughput(output_tokens_per_s=tps, total_tokens_per_s=3 * tps,
                              requests_per_s=REQUESTS / window_s),
        latency=Latency(e2e=LatencyStats(mean_s=e2e, p50_s=e2e, p90_s=1.5 * e2e, n=REQUESTS)),
        energy=energy,
        warnings=[Warning_(code="synthetic_check", message=f"a named warning of {run.run_id}")],
    )
