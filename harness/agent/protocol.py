"""The measurement protocol: baseline, load, warmup, measured window, prefill pass, metrics."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent import environment, validity
from harness.agent.backends import create_backend
from harness.agent.backends.base import Backend, RequestTiming
from harness.agent.metrics import (
    coefficient_of_variation,
    flops_estimate,
    latency_stats,
    ratio,
)
from harness.agent.sensors import select_sensor
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.workload import batches, file_prompts, prompts_sha256, synthetic_prompts
from harness.config.experiment import Experiment, Measurement
from harness.results.io import atomic_write_json, atomic_write_text
from harness.results.schema import (
    Compute,
    DeviceEnergy,
    Energy,
    ExperimentResult,
    Latency,
    PrefillSplit,
    RunSpec,
    Throughput,
    Timings,
    Tokens,
    Warmup,
)

CV_WINDOW = 5


@dataclass
class Window:
    """What one measured window produced."""

    reading: WindowReading
    requests: list[tuple[int, int, RequestTiming]]
    iterations: int
    duration_s: float
    start_unix: float
    end_unix: float

    @property
    def input_tokens(self) -> int:
        """Prompt tokens processed in the window."""
        return sum(r.input_tokens for _, _, r in self.requests)

    @property
    def output_tokens(self) -> int:
        """Tokens generated in the window."""
        return sum(r.output_tokens for _, _, r in self.requests)


def measure_idle(sensor: Sensor, m: Measurement) -> tuple[dict[str, float | None], float]:
    """Idle power per device over ``baseline_s`` before the model loads (skipped if blind)."""
    if not sensor.available or m.baseline_s <= 0:
        return {}, 0.0
    sensor.begin(m.sample_interval_ms)
    time.sleep(m.baseline_s)
    reading = sensor.end()
    idle = {
        dev: (e / reading.duration_s if e is not None and reading.duration_s > 0 else None)
        for dev, e in reading.energy_j.items()
    }
    return idle, reading.duration_s


def run_warmup(
    backend: Backend, work: list[list[list[int]]], m: Measurement, output_tokens: int
) -> Warmup:
    """Fixed warmup batches, or batches until the batch-latency CV falls below a target."""
    start = time.perf_counter()
    latencies: list[float] = []
    target = m.warmup_until_cv
    limit = m.warmup_max_batches if target is not None else m.warmup_batches
    final_cv = None
    converged: bool | None = None if target is None else False
    for i in range(limit):
        t0 = time.perf_counter()
        backend.generate(work[i % len(work)], output_tokens)
        latencies.append(time.perf_counter() - t0)
        if target is not None and len(latencies) >= CV_WINDOW:
            final_cv = coefficient_of_variation(latencies[-CV_WINDOW:])
            if final_cv is not None and final_cv < target:
                converged = True
                break
    if target is None:
        final_cv = coefficient_of_variation(latencies[-CV_WINDOW:])
    return Warmup(
        batches=len(latencies),
        duration_s=time.perf_counter() - start,
        final_cv=final_cv,
        target_cv=target,
        converged=converged,
    )


def measure_window(
    backend: Backend,
    sensor: Sensor,
    work: list[list[list[int]]],
    m: Measurement,
    max_new_tokens: int,
) -> Window:
    """Run whole passes over the batches until the window lasts ``min_window_s``."""
    requests: list[tuple[int, int, RequestTiming]] = []
    backend.synchronize()
    start_unix = time.time()
    sensor.begin(m.sample_interval_ms)
    start = time.perf_counter()
    iterations = 0
    while True:
        for b, batch in enumerate(work):
            for timing in backend.generate(batch, max_new_tokens):
                requests.append((iterations, b, timing))
        iterations += 1
        if time.perf_counter() - start >= m.min_window_s:
            break
    backend.synchronize()
    duration = time.perf_counter() - start
    reading = sensor.end()
    return Window(reading, requests, iterations, duration, start_unix, time.time())


def energy_figures(
    window: Window, idle_w: dict[str, float | None], sensor: Sensor
) -> Energy:
    """Energy over the window and the per-token, per-request and power figures."""
    reading = window.reading
    total = reading.total_energy_j
    if reading.method == "unavailable" or total is None:
        return Energy(
            energy_method="unavailable",
            unavailable_reason=sensor.reason or "the sensor returned no energy for the window",
            samples=len(reading.samples),
        )
    requests = len(window.requests)
    idle_total = (
        sum(v for v in idle_w.values() if v is not None)
        if idle_w and all(v is not None for v in idle_w.values())
        else None
    )
    devices = []
    for dev, e in reading.energy_j.items():
        powers = [s["power_w"] for s in reading.samples if s.get("device") == dev and s.get("power_w") is not None]
        devices.append(
            DeviceEnergy(
                device=dev,
                energy_j=e,
                idle_power_w=idle_w.get(dev),
                mean_power_w=ratio(e, window.duration_s),
                peak_power_w=max(powers) if powers else None,
            )
        )
    peaks = [d.peak_power_w for d in devices]
    j_per_request = ratio(total, requests)
    return Energy(
        energy_method=reading.method,
        energy_j=total,
        idle_power_w=idle_total,
        dynamic_energy_j=(total - idle_total * window.duration_s) if idle_total is not None else None,
        mean_power_w=ratio(total, window.duration_s),
        peak_power_w=sum(p for p in peaks if p is not None) if peaks and all(p is not None for p in peaks) else None,
        j_per_output_token=ratio(total, window.output_tokens),
        j_per_token=ratio(total, window.input_tokens + window.output_tokens),
        j_per_request=j_per_request,
        wh_per_1k_requests=j_per_request * 1000 / 3600 if j_per_request is not None else None,
        output_tokens_per_j=ratio(window.output_tokens, total),
        devices=devices,
        samples=len(reading.samples),
    )


def prefill_split(
    backend: Backend, sensor: Sensor, work: list[list[list[int]]], m: Measurement,
    main: Window,
) -> tuple[PrefillSplit, Window | None]:
    """Energy of prefill-only passes (one new token), scaled to the main window's passes."""
    if not m.prefill_split:
        return PrefillSplit(measured=False, reason="prefill_split is off"), None
    if not backend.prefill_only_pass:
        return PrefillSplit(measured=False, reason="the backend has no prefill-only pass"), None
    window = measure_window(backend, sensor, work, m, 1)
    scale = main.iterations / window.iterations
    energy = window.reading.total_energy_j
    total = main.reading.total_energy_j
    split = PrefillSplit(measured=True, prefill_window_s=window.duration_s * scale)
    if energy is None or total is None:
        split.reason = "energy is unavailable, so prefill and decode energy are unknown"
        return split, window
    prefill_j = energy * scale
    split.prefill_energy_j = prefill_j
    split.decode_energy_j = total - prefill_j
    split.prefill_j_per_input_token = ratio(prefill_j, main.input_tokens)
    split.decode_j_per_output_token = ratio(total - prefill_j, main.output_tokens)
    return split, window


def latency_summary(window: Window, per_token: bool) -> Latency:
    """TTFT, inter-token latency, TPOT and end-to-end statistics over the window's requests."""
    timings = [r for _, _, r in window.requests]
    itl = [x for r in timings for x in r.itl_s]
    return Latency(
        ttft=latency_stats([r.ttft_s for r in timings]),
        itl=latency_stats(itl),
        tpot=latency_stats([r.tpot_s for r in timings]),
        e2e=latency_stats([r.e2e_s for r in timings]),
        per_token_timestamps=per_token,
    )


def write_requests(path: Path, window: Window) -> None:
    """One JSON line per request of the window."""
    lines = []
    for iteration, batch, r in window.requests:
        lines.append(
            json.dumps(
                {
                    "iteration": iteration,
                    "batch": batch,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "ttft_s": r.ttft_s,
                    "tpot_s": r.tpot_s,
                    "e2e_s": r.e2e_s,
                    "itl_s": r.itl_s,
                },
                separators=(",", ":"),
            )
        )
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


TIMESERIES_COLUMNS = [
    "phase", "t_s", "device", "power_w", "energy_j", "temperature_c", "sm_clock_mhz",
    "mem_clock_mhz", "memory_used_bytes", "utilization_gpu_pct", "throttle_reasons",
]


def write_timeseries(path: Path, phases: dict[str, WindowReading]) -> None:
    """Every sample of every measured phase, one row per device and sample."""
    rows = []
    for phase, reading in phases.items():
        for sample in reading.samples:
            rows.append({"phase": phase, **{k: sample.get(k) for k in TIMESERIES_COLUMNS[1:]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TIMESERIES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def compute_figures(backend: Backend, exp: Experiment, window: Window) -> Compute:
    """FLOPs estimate from the parameter count, and peak memory."""
    counts = backend.parameter_counts()
    compute = Compute(peak_memory_allocated_bytes=backend.memory_peak_bytes())
    if counts is not None:
        total, embedding = counts
        info = backend.info()
        non_emb = total - embedding
        compute.non_embedding_params = non_emb
        compute.flops = flops_estimate(
            non_emb, window.input_tokens, window.output_tokens, len(window.requests),
            layers=info.get("num_layers"), hidden=info.get("hidden_size"),
        )
        compute.flops_per_s = ratio(compute.flops, window.duration_s)
    return compute


def run(
    spec: RunSpec,
    out_dir: Path,
    *,
    sensor: Sensor | None = None,
    backend: Backend | None = None,
) -> ExperimentResult:
    """Run the whole protocol for one experiment and write its files into ``out_dir``."""
    t_start = time.perf_counter()
    exp = spec.experiment
    m = exp.measurement
    sensor = sensor or select_sensor(exp.device, spec.gpu_uuids)
    try:
        idle_w, baseline_s = measure_idle(sensor, m)
        backend = backend or create_backend(exp)
        t_load = time.perf_counter()
        backend.load(spec.model_path)
        load_s = time.perf_counter() - t_load

        vocab_size, special = backend.vocab()
        if exp.workload.dataset == "synthetic":
            prompts = synthetic_prompts(exp.workload, vocab_size, special)
        else:
            prompts = file_prompts(exp.workload, Path(exp.workload.dataset), backend.encode)
        work = batches(prompts, exp.batch_size)
        out_tokens = exp.workload.output_tokens

        warm = run_warmup(backend, work, m, out_tokens)
        backend.reset_memory_peak()
        main = measure_window(backend, sensor, work, m, out_tokens)
        compute = compute_figures(backend, exp, main)
        split, prefill_window = prefill_split(backend, sensor, work, m, main)
        energy = energy_figures(main, idle_w, sensor)
        backend_info = backend.info()
    finally:
        if backend is not None:
            backend.unload()
        sensor.close()

    phases = {"window": main.reading}
    if prefill_window is not None:
        phases["prefill"] = prefill_window.reading
    write_timeseries(out_dir / "timeseries.csv", phases)
    write_requests(out_dir / "requests.jsonl", main)

    requests = len(main.requests)
    result = ExperimentResult(
        run=spec.run,
        experiment=exp,
        backend_info=backend_info,
        environment=environment.capture(
            {"sensor": sensor.provenance(), "image": spec.image.model_dump() if spec.image else None,
             "runner": spec.runner, "seeds": {"workload": exp.workload.seed}}
        ),
        timings=Timings(
            baseline_s=baseline_s,
            load_s=load_s,
            warmup_s=warm.duration_s,
            window_s=main.duration_s,
            total_s=time.perf_counter() - t_start,
            window_start_unix=main.start_unix,
            window_end_unix=main.end_unix,
        ),
        tokens=Tokens(
            requests=requests,
            input_tokens=main.input_tokens,
            output_tokens=main.output_tokens,
            iterations=main.iterations,
            prompts_sha256=prompts_sha256(prompts),
        ),
        throughput=Throughput(
            output_tokens_per_s=main.output_tokens / main.duration_s,
            total_tokens_per_s=(main.input_tokens + main.output_tokens) / main.duration_s,
            requests_per_s=requests / main.duration_s,
        ),
        latency=latency_summary(main, backend.per_token_timestamps),
        energy=energy,
        prefill=split,
        warmup=warm,
        compute=compute,
    )
    result.warnings = validity.check(result, main.reading, sensor)
    atomic_write_json(out_dir / "result.json", result)
    return result


def describe_result(result: ExperimentResult) -> dict[str, Any]:
    """Headline figures of a result, for logs and the manifest."""
    return {
        "output_tokens_per_s": result.throughput.output_tokens_per_s,
        "j_per_output_token": result.energy.j_per_output_token,
        "e2e_p50_s": result.latency.e2e.p50_s,
    }
