"""The measurement protocol: its steps in order (docs/methodology.md, section 1, same order).

Prompts are read and checked before anything starts; then the pre-load idle baseline, the
engine's load and the device check, warmup, the loaded-idle baseline, an optional settling
warmup, the measured window, the prefill window, and the figures. Each step lives in its own
module: baseline, warmup, window, prefill, identity, and the figures in energy, steady,
latency, compute and interference; files writes timeseries.csv and requests.jsonl.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent import activity, validity
from harness.agent.baseline import Baseline, measure_baseline
from harness.agent.compute import compute_figures
from harness.agent.energy import energy_figures
from harness.agent.files import TIMESERIES_COLUMNS, write_requests, write_timeseries
from harness.agent.identity import check_devices
from harness.agent.interference import HostProbe, interference
from harness.agent.latency import latency_summary
from harness.agent.prefill import prefill_split
from harness.agent.record import run_environment, write_result
from harness.agent.sensors import select_sensor
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.steady import steady_state
from harness.agent.warmup import run_warmup, settle
from harness.agent.window import Window, measure_window, slowest_counter_s, window_target
from harness.agent.workload import (
    batches,
    dataset_for,
    encode_prompts,
    prompts_sha256,
    read_prompt_texts,
    synthetic_prompts,
)
from harness.backends.engine import Engine, create_engine, engine_info
from harness.model_identity import identify_for_agent
from harness.results.energy import Energy, PrefillSplit
from harness.results.schema import (
    Compute,
    ExperimentResult,
    Interference,
    RunSpec,
    Throughput,
    Timings,
    Tokens,
    Warmup,
)

#: timeseries.csv's columns live in files.py; named here too, where sensors and tests look
__all__ = ["TIMESERIES_COLUMNS", "run"]


def prompt_texts(spec: RunSpec) -> list[str] | None:
    """The prompt file's texts, read and checked before the engine starts (None: synthetic)."""
    if spec.experiment.workload.dataset == "synthetic":
        return None
    return read_prompt_texts(spec.experiment.workload, dataset_for(spec, "workload.dataset"))


def encoded_prompts(spec: RunSpec, texts: list[str] | None, backend: Engine) -> list[list[int]]:
    """Token ids of the prompts: the file's texts encoded, or synthetic ones from the seed."""
    exp = spec.experiment
    if texts is None:
        vocab_size, special = backend.vocab()
        return synthetic_prompts(exp.workload, vocab_size, special)
    source = dataset_for(spec, "workload.dataset")
    return encode_prompts(exp.workload, texts, backend.encode,
                          Path(source.agent_path or source.path))


def other_gpu_processes(reading: WindowReading, devices: list[str]) -> int | None:
    """Processes other than this one on the measured GPUs at the window's edges (None: unknown)."""
    if not devices:
        return None
    found = 0
    for dev in devices:
        pids = reading.gpu_processes.get(dev)
        if pids is None:
            return None
        found += validity.foreign_pids(list(pids), os.getpid(), True)[0]
    return found


@dataclass
class Measured:
    """What the protocol's steps produced, in the order they ran."""

    prompts: list[list[int]]
    load_s: float
    warm: Warmup
    main: Window
    split: PrefillSplit
    energy: Energy
    compute: Compute
    backend_info: dict[str, Any]
    device_check: dict[str, Any]
    preload: Baseline | None = None
    loaded: Baseline | None = None
    prefill_window: Window | None = None

    def phases(self) -> dict[str, WindowReading]:
        """Every measured phase's reading, in the order they ran (timeseries.csv, validity)."""
        found = {"idle": self.preload, "loaded_idle": self.loaded}
        phases = {name: b.reading for name, b in found.items() if b is not None}
        phases["window"] = self.main.reading
        if self.prefill_window is not None:
            phases["prefill"] = self.prefill_window.reading
        return phases


def _measure(
    spec: RunSpec, sensor: Sensor, backend: Engine, texts: list[str] | None, host: HostProbe | None
) -> Measured:
    """Load, check, warm up, and measure every window (the engine is unloaded by the caller)."""
    exp = spec.experiment
    m = exp.measurement
    preload = measure_baseline(sensor, m.baseline_s, m.sample_interval_ms)
    t_load = time.perf_counter()
    backend.load(spec.model_path)
    load_s = time.perf_counter() - t_load
    activity.publish(activity.Activity.LOADED_IDLE)  # model resident, no request
    device_check = check_devices(backend.device_uuids(), sensor)
    prompts = encoded_prompts(spec, texts, backend)
    work = batches(prompts, exp.batch_size)
    out_tokens = exp.workload.output_tokens
    warm = run_warmup(backend, work, m, out_tokens)
    backend.synchronize()
    loaded = measure_baseline(sensor, m.loaded_idle_s, m.sample_interval_ms)
    settle(backend, sensor, work, m, out_tokens, warm)
    backend.reset_memory_peak()
    baselines = [b.reading for b in (loaded, preload) if b is not None]
    target = window_target(m, exp.device, slowest_counter_s(baselines, sensor.devices))
    main = measure_window(backend, sensor, work, m.sample_interval_ms, out_tokens, target, host)
    split, prefill = prefill_split(backend, sensor, work, m, main, loaded, target)
    readings = [main.reading] + ([prefill.reading] if prefill is not None else [])
    return Measured(
        prompts=prompts, load_s=load_s, warm=warm, main=main, split=split,
        energy=energy_figures(main, sensor, preload, loaded, m.sample_interval_ms),
        compute=compute_figures(backend, main, readings, sensor.devices, spec.model_path),
        backend_info=engine_info(backend), device_check=device_check,
        preload=preload, loaded=loaded, prefill_window=prefill,
    )


def _interference(got: Measured, sensor: Sensor, host: HostProbe | None) -> Interference:
    """What else used the machine during the measured window."""
    main = got.main
    others = other_gpu_processes(main.reading, sensor.devices)
    if host is None or main.host is None:
        return Interference(other_gpu_processes=others)
    start, end = main.host
    return interference(start, end, main.window_s, host.cpu_count(), others)


def run(
    spec: RunSpec,
    out_dir: Path,
    *,
    sensor: Sensor | None = None,
    backend: Engine | None = None,
    host: HostProbe | None = None,
) -> ExperimentResult:
    """Run the whole protocol for one experiment and write its files into ``out_dir``.

    ``host`` reads the machine's CPU counters at the window's edges (default: this machine's
    /proc and cgroup). ``mode: serving`` runs the serving protocol (harness.agent.serving).
    """
    t_start = time.perf_counter()
    exp = spec.experiment
    if exp.mode == "serving":  # the one place where the modes part
        from harness.agent.serving.protocol import run_serving

        return run_serving(spec, out_dir, sensor=sensor, host=host)
    texts = prompt_texts(spec)  # a bad prompts file costs no engine start
    host = host or HostProbe()
    sensor = sensor or select_sensor(exp.device, spec.gpu_uuids, library=spec.gpu_library)
    try:
        backend = backend or create_engine(exp)
        got = _measure(spec, sensor, backend, texts, host)
    finally:
        if backend is not None:
            backend.unload()
            activity.publish(activity.Activity.NO_CONTEXT)  # no model, no context
        sensor.close()
    return _finish(spec, out_dir, sensor, got, _interference(got, sensor, host), t_start)


def _finish(
    spec: RunSpec, out_dir: Path, sensor: Sensor, got: Measured, host: Interference,
    t_start: float,
) -> ExperimentResult:
    """Write timeseries.csv, requests.jsonl and, last, result.json with its warnings."""
    exp = spec.experiment
    main = got.main
    phases = got.phases()
    write_timeseries(out_dir / "timeseries.csv", phases)
    write_requests(out_dir / "requests.jsonl", main)
    requests = len(main.requests)
    window_s = main.window_s
    prompts_digest = prompts_sha256(got.prompts)
    result = ExperimentResult(
        run=spec.run,
        experiment=exp,
        backend_info=got.backend_info,
        environment=run_environment(spec, sensor, got.device_check, prompts_digest),
        timings=Timings(
            baseline_s=got.preload.reading.duration_s if got.preload is not None else 0.0,
            load_s=got.load_s,
            loaded_idle_s=got.loaded.reading.duration_s if got.loaded is not None else None,
            warmup_s=got.warm.duration_s,
            window_s=window_s,
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
            output_tokens_per_s=main.output_tokens / window_s,
            total_tokens_per_s=(main.input_tokens + main.output_tokens) / window_s,
            requests_per_s=requests / window_s,
        ),
        latency=latency_summary(main, got.backend_info.get("timestamp_source") != "none",
                                got.backend_info),
        energy=got.energy,
        prefill=got.split,
        warmup=got.warm,
        compute=got.compute,
        steady_state=steady_state(main, sensor.devices, exp.measurement),
        interference=host,
        model=identify_for_agent(exp.model, spec.model_path, spec.model_fingerprint),
        datasets=spec.datasets,
        gpu_settings=spec.gpu_settings,
    )
    return write_result(out_dir, result, phases, sensor)
