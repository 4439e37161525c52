"""The measurement protocol: baseline, load, warmup, measured window, prefill pass, metrics.

docs/methodology.md describes each step; the order here is the order there.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent import activity, environment, validity
from harness.agent.metrics import (
    FLOPS_FORMULA,
    coefficient_of_variation,
    flops_estimate,
    known,
    latency_stats,
    peak_total_power_w,
    ratio,
)
from harness.agent.sensors import select_sensor
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.sensors.composite import host_figures
from harness.agent.workload import batches, file_prompts, prompts_sha256, synthetic_prompts
from harness.backends.engine import Engine, RequestTiming, create_engine, engine_info
from harness.config.experiment import Measurement
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

#: the warmup CV is taken over this many of the latest batches of the same shape
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


def measure_idle(
    sensor: Sensor, m: Measurement
) -> tuple[dict[str, float | None], WindowReading | None]:
    """Idle power per device over ``baseline_s`` before the model loads (skipped if blind).

    This thread sleeps for the whole baseline; only the sensor's sampler thread wakes up.
    """
    if not sensor.available or m.baseline_s <= 0:
        return {}, None
    sensor.begin(m.sample_interval_ms)
    time.sleep(m.baseline_s)
    reading = sensor.end()
    idle = {dev: ratio(e, reading.duration_s) for dev, e in reading.energy_j.items()}
    return idle, reading


def _shape(batch: list[list[int]]) -> tuple[int, int]:
    return len(batch), max((len(p) for p in batch), default=0)


def run_warmup(
    backend: Engine, work: list[list[list[int]]], m: Measurement, output_tokens: int
) -> Warmup:
    """Fixed warmup batches, or batches until the batch-latency CV falls below a target.

    The CV compares batches of the same shape (size and prompt length), so a smaller last
    batch does not keep the CV high; ``final_cv`` is None with fewer than two such batches.
    """
    start = time.perf_counter()
    by_shape: dict[tuple[int, int], list[float]] = {}
    target = m.warmup_until_cv
    limit = m.warmup_max_batches if target is not None else m.warmup_batches
    final_cv = None
    converged: bool | None = None if target is None else False
    done = 0
    for i in range(limit):
        batch = work[i % len(work)]
        t0 = time.perf_counter()
        backend.generate(batch, output_tokens)
        same = by_shape.setdefault(_shape(batch), [])
        same.append(time.perf_counter() - t0)
        done += 1
        final_cv = coefficient_of_variation(same[-CV_WINDOW:])
        if target is not None and len(same) >= CV_WINDOW:
            if final_cv is not None and final_cv < target:
                converged = True
                break
    return Warmup(
        batches=done,
        duration_s=time.perf_counter() - start,
        final_cv=final_cv,
        target_cv=target,
        converged=converged,
    )


def measure_window(
    backend: Engine,
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


def device_figures(
    reading: WindowReading, dev: str, idle_w: float | None
) -> DeviceEnergy:
    """Energy, power, temperature and memory of one device over one window."""
    rows = reading.device_samples(dev)
    energy = reading.energy_j.get(dev)
    powers = known(rows, "power_w")
    temps = known(rows, "temperature_c")
    memory = known(rows, "memory_used_bytes")
    return DeviceEnergy(
        device=dev,
        energy_j=energy,
        energy_method=reading.methods.get(dev),
        readout=reading.readouts.get(dev),
        gpu_processes=reading.gpu_processes.get(dev),
        idle_power_w=idle_w,
        dynamic_energy_j=(
            energy - idle_w * reading.duration_s
            if energy is not None and idle_w is not None else None
        ),
        mean_power_w=ratio(energy, reading.duration_s),
        peak_power_w=max(powers) if powers else None,
        samples=len(powers),
        temperature_start_c=temps[0] if temps else None,
        temperature_end_c=temps[-1] if temps else None,
        temperature_max_c=max(temps) if temps else None,
        peak_memory_used_bytes=int(max(memory)) if memory else None,
    )


def energy_figures(
    window: Window,
    idle_w: dict[str, float | None],
    sensor: Sensor,
    idle: WindowReading | None = None,
    interval_ms: int | None = None,
) -> Energy:
    """Energy over the window and the per-token, per-request and power figures."""
    reading = window.reading
    total = reading.total_energy_j
    devices = [device_figures(reading, dev, idle_w.get(dev)) for dev in sensor.devices]
    notes = list(reading.notes)
    if idle is not None:
        notes += [f"idle: {n}" for n in idle.notes]
    if reading.sampler_missed_ticks:
        notes.append(f"the sampler missed {reading.sampler_missed_ticks} ticks")
    common: dict[str, Any] = {
        "devices": devices,
        "host": host_figures(reading, sensor.provenance().get("host", {}).get("reason")),
        "window_s": reading.duration_s,
        "idle_window_s": idle.duration_s if idle is not None else None,
        "sample_interval_ms": interval_ms if sensor.available else None,
        "sampler_cpu_s": reading.sampler_cpu_s,
        "notes": notes,
    }
    if reading.method == "unavailable" or total is None:
        reason = sensor.reason or "; ".join(reading.notes) or "the sensor gave no energy"
        return Energy(energy_method="unavailable", unavailable_reason=reason, **common)
    common["samples"] = min((d.samples for d in devices), default=0)
    common["idle_samples"] = (
        min((len(known(idle.device_samples(d), "power_w")) for d in sensor.devices), default=0)
        if idle is not None else None
    )
    host = common["host"]
    common["total_energy_j"] = total if host is None else (
        total + host.energy_j if host.energy_j is not None else None)
    requests = len(window.requests)
    idle_values = [idle_w.get(dev) for dev in sensor.devices]
    idle_total = (
        float(sum(v for v in idle_values if v is not None))
        if idle_values and all(v is not None for v in idle_values)
        else None
    )
    j_per_request = ratio(total, requests)
    return Energy(
        energy_method=reading.method,
        readout=reading.readout,
        energy_j=total,
        idle_power_w=idle_total,
        dynamic_energy_j=(
            total - idle_total * reading.duration_s if idle_total is not None else None
        ),
        mean_power_w=ratio(total, reading.duration_s),
        peak_power_w=peak_total_power_w(reading.samples, sensor.devices),
        j_per_output_token=ratio(total, window.output_tokens),
        j_per_token=ratio(total, window.input_tokens + window.output_tokens),
        j_per_request=j_per_request,
        wh_per_1k_requests=j_per_request * 1000 / 3600 if j_per_request is not None else None,
        output_tokens_per_j=ratio(window.output_tokens, total),
        **common,
    )


def prefill_split(
    backend: Engine, sensor: Sensor, work: list[list[list[int]]], m: Measurement,
    main: Window,
) -> tuple[PrefillSplit, Window | None]:
    """Energy of prefill-only passes (one new token), scaled to the main window's passes.

    The prefill window repeats whole passes until ``min_window_s`` like the main window;
    its energy per pass times the main window's passes is the prefill energy, and decode
    energy is the main window's energy minus that.
    """
    if not m.prefill_split:
        return PrefillSplit(measured=False, reason="prefill_split is off"), None
    if not backend.prefill_only_pass:
        return PrefillSplit(measured=False, reason="the backend has no prefill-only pass"), None
    window = measure_window(backend, sensor, work, m, 1)
    scale = main.iterations / window.iterations
    energy = window.reading.total_energy_j
    total = main.reading.total_energy_j
    prefill_s = window.duration_s * scale
    split = PrefillSplit(
        measured=True,
        prefill_window_s=prefill_s,
        decode_window_s=main.duration_s - prefill_s,
        prefill_iterations=window.iterations,
        prefill_energy_method=window.reading.method,
        prefill_samples=min(
            (len(known(window.reading.device_samples(d), "power_w")) for d in sensor.devices),
            default=0,
        ),
    )
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
    "mem_clock_mhz", "memory_used_bytes", "utilization_gpu_pct", "throttle_reasons", "tick",
]
"""timeseries.csv: t_s from the phase's start; energy_j is the energy since the phase began;
throttle_reasons is NVML's clock-event bit mask; empty cells are unknown."""


def write_timeseries(path: Path, phases: dict[str, WindowReading]) -> None:
    """Every sample of every measured phase, one row per device and sample."""
    rows = []
    for phase, reading in phases.items():
        for sample in reading.samples + (reading.host.samples if reading.host else []):
            rows.append({"phase": phase, **{k: sample.get(k) for k in TIMESERIES_COLUMNS[1:]}})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=TIMESERIES_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def peak_memory_used_bytes(readings: list[WindowReading], devices: list[str]) -> int | None:
    """Peak NVML used memory per device over the readings, summed over devices."""
    peaks = []
    for dev in devices:
        values = [v for r in readings for v in known(r.device_samples(dev), "memory_used_bytes")]
        if not values:
            return None
        peaks.append(int(max(values)))
    return sum(peaks) if peaks else None


def compute_figures(
    backend: Engine, window: Window, readings: list[WindowReading], devices: list[str]
) -> Compute:
    """FLOPs estimate from the parameter count, and peak memory (allocator and NVML)."""
    counts = backend.parameter_counts()
    compute = Compute(
        peak_memory_allocated_bytes=backend.memory_peak_bytes(),
        peak_memory_used_bytes=peak_memory_used_bytes(readings, devices),
    )
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
        compute.flops_formula = FLOPS_FORMULA
    return compute


def run(
    spec: RunSpec,
    out_dir: Path,
    *,
    sensor: Sensor | None = None,
    backend: Engine | None = None,
) -> ExperimentResult:
    """Run the whole protocol for one experiment and write its files into ``out_dir``."""
    t_start = time.perf_counter()
    exp = spec.experiment
    m = exp.measurement
    sensor = sensor or select_sensor(exp.device, spec.gpu_uuids, library=spec.gpu_library)
    prefill_window: Window | None = None
    try:
        idle_w, idle = measure_idle(sensor, m)
        backend = backend or create_engine(exp)
        t_load = time.perf_counter()
        backend.load(spec.model_path)
        load_s = time.perf_counter() - t_load
        activity.publish(activity.Activity.LOADED_IDLE)

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
        split, prefill_window = prefill_split(backend, sensor, work, m, main)
        loaded = [main.reading] + ([prefill_window.reading] if prefill_window else [])
        compute = compute_figures(backend, main, loaded, sensor.devices)
        energy = energy_figures(main, idle_w, sensor, idle, m.sample_interval_ms)
        backend_info = engine_info(backend)
        per_token = backend.per_token_timestamps
    finally:
        if backend is not None:
            backend.unload()
            activity.publish(activity.Activity.NO_CONTEXT)
        sensor.close()

    phases: dict[str, WindowReading] = {}
    if idle is not None:
        phases["idle"] = idle
    phases["window"] = main.reading
    if prefill_window is not None:
        phases["prefill"] = prefill_window.reading
    write_timeseries(out_dir / "timeseries.csv", phases)
    write_requests(out_dir / "requests.jsonl", main)

    requests = len(main.requests)
    prompts_digest = prompts_sha256(prompts)
    result = ExperimentResult(
        run=spec.run,
        experiment=exp,
        backend_info=backend_info,
        environment=environment.capture(
            {
                "sensor": sensor.provenance(),
                "image": spec.image.model_dump() if spec.image else None,
                "runner": spec.runner,
                "gpu_uuids_requested": list(spec.gpu_uuids),
                "seeds": {"workload": exp.workload.seed},
                "prompts_sha256": prompts_digest,
            }
        ),
        timings=Timings(
            baseline_s=idle.duration_s if idle is not None else 0.0,
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
            prompts_sha256=prompts_digest,
        ),
        throughput=Throughput(
            output_tokens_per_s=main.output_tokens / main.duration_s,
            total_tokens_per_s=(main.input_tokens + main.output_tokens) / main.duration_s,
            requests_per_s=requests / main.duration_s,
        ),
        latency=latency_summary(main, per_token),
        energy=energy,
        prefill=split,
        warmup=warm,
        compute=compute,
    )
    result.energy.phase_edges_s = {
        p: (r.start_s, r.end_s) for p, r in phases.items() if r.start_s is not None and r.end_s is not None
    }
    result.warnings = validity.check(result, phases, sensor)
    atomic_write_json(out_dir / "result.json", result)
    return result

