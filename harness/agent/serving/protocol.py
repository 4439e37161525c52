"""Serving mode's protocol: the offline protocol's sensors, baselines and checks, a served load.

Steps (docs/serving.md, section 1): the requests file is read and checked; the pre-load idle
baseline; the server starts and is waited for (``load_s``); the requests are planned from the
model's tokenizer; warmup requests; the loaded-idle baseline (server up, idle); the load, in one
sensor window from just before the first request to just after the last; the steady window is
found in the requests' timeline and the load's reading is cropped to it; the server is stopped
(on every path); the figures, requests.jsonl, timeseries.csv and, last, result.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent import activity
from harness.agent.baseline import Baseline, measure_baseline
from harness.agent.compute import peak_memory_used_bytes
from harness.agent.crop import crop
from harness.agent.energy import energy_figures
from harness.agent.files import write_jsonl, write_timeseries
from harness.agent.identity import check_devices
from harness.agent.interference import HostProbe, interference
from harness.agent.latency import latency_of
from harness.agent.record import run_environment, write_result
from harness.agent.sensors import select_sensor
from harness.agent.sensors.base import Sensor, WindowReading
from harness.agent.serving import figures
from harness.agent.serving.checks import serving_warnings, steady_verdict
from harness.agent.serving.client import request
from harness.agent.serving.loadgen import Gauge, LoadGenerator, LoadResult
from harness.agent.serving.prompts import Tokenizer, planned_requests, read_requests_file
from harness.agent.serving.requests import PlannedRequest, requests_sha256, warmup_requests
from harness.agent.serving.server import LOOPBACK, Server, free_port, log_tail
from harness.agent.serving.steady import RULE, ServingWindow, SteadySpan, count_window, steady_span
from harness.agent.steady import steady_state
from harness.agent.window import window_target
from harness.backends.spec import BackendSpec, ServingSupport
from harness.config.experiment import Experiment
from harness.errors import RunFailure
from harness.model_identity import identify_for_agent
from harness.results.energy import Energy, PrefillSplit
from harness.results.reasons import FailureReason
from harness.results.schema import (
    Compute,
    ExperimentResult,
    RunSpec,
    ServingResult,
    Throughput,
    Timings,
    Tokens,
    Warmup,
)

SERVER_FOLDER = "server"
SERVER_LOG = "server.log"
REQUESTS_FILE = "requests.jsonl"
#: the running-batch gauge is polled at most this often
MIN_POLL_S = 0.25
TOKEN_TIMING = ("server-sent events of the OpenAI completions stream, timestamped "
                "(time.perf_counter) as the load generator reads them")


@dataclass
class Served:
    """What the served steps produced."""

    load: LoadResult
    reading: WindowReading
    sensor_start_s: float
    clock_s: float
    load_s: float
    warm: Warmup
    planned: list[PlannedRequest]
    info: dict[str, Any]
    preload: Baseline | None
    loaded: Baseline | None
    host: Any


def support_of(spec: BackendSpec) -> ServingSupport:
    """The backend's serving support (experiments without one are refused at plan time)."""
    if spec.serving is None:
        raise RunFailure(spec.no_server(), reason=FailureReason.INPUT_INVALID)
    return spec.serving


def _version(port: int, path: str) -> str:
    """The server's version from its version endpoint ("unknown" when it does not say)."""
    import asyncio

    try:
        got = asyncio.run(asyncio.wait_for(request(LOOPBACK, port, "GET", path), timeout=10.0))
        version = got.json().get("version") if got.status == 200 else None
    except (TimeoutError, OSError, ValueError, AttributeError):
        version = None
    return str(version) if version else "unknown"


def _generator(exp: Experiment, support: ServingSupport, server: Server, model: str) -> LoadGenerator:
    gauge = None
    if support.metrics_path and support.running_gauge:
        interval = max(MIN_POLL_S, exp.measurement.sample_interval_ms / 1000)
        gauge = Gauge(support.metrics_path, support.running_gauge, interval)
    return LoadGenerator(server.port, model, exp.decoding,
                         request_timeout_s=exp.serving.request_timeout_s, gauge=gauge,
                         server_exit=server.exited)


def _warm(gen: LoadGenerator, exp: Experiment, tokenizer: Tokenizer) -> Warmup:
    """Send the warmup requests (all at once) and wait for them; failures fail the run."""
    warm = warmup_requests(exp, *tokenizer.vocab())
    if not warm:
        return Warmup()
    t0 = time.perf_counter()
    got = gen.run_sync(warm)
    bad = [r for r in got.records if r.status != "ok"]
    if bad:
        raise RunFailure(f"{len(bad)} of {len(warm)} warmup requests failed: {bad[0].error}",
                         reason=FailureReason.REQUEST_ERRORS)
    return Warmup(batches=len(warm), duration_s=time.perf_counter() - t0)


def _serve(spec: RunSpec, out_dir: Path, sensor: Sensor, host: HostProbe,
           file: Any) -> Served:
    """Baselines, the server's start, warmup and the load; the server is stopped on every path."""
    exp = spec.experiment
    m = exp.measurement
    support = support_of(exp.spec)
    preload = measure_baseline(sensor, m.baseline_s, m.sample_interval_ms)
    port = free_port()
    launch = support.launch(exp, spec.model_path, port, out_dir / SERVER_FOLDER)
    with Server(launch, out_dir / SERVER_FOLDER, out_dir / SERVER_LOG, port) as server:
        load_s = server.wait_ready(support.health_path, exp.serving.ready_timeout_s)
        activity.publish(activity.Activity.LOADED_IDLE)  # model resident, no request yet
        info = {"engine": exp.backend, "engine_version": _version(port, support.version_path),
                "server_argv": list(launch.argv), "server_ready_s": load_s,
                "timestamp_source": "stream", "token_timing": TOKEN_TIMING}
        tokenizer = Tokenizer(spec.model_path)
        planned = planned_requests(spec, tokenizer, file)
        gen = _generator(exp, support, server, launch.model_name)
        warm = _warm(gen, exp, tokenizer)
        loaded = measure_baseline(sensor, m.loaded_idle_s, m.sample_interval_ms)
        host_start = host.snapshot()
        before = time.perf_counter()
        sensor.begin(m.sample_interval_ms)
        after = time.perf_counter()
        try:
            load = gen.run_sync(planned, concurrency=exp.serving.concurrency,
                                duration_s=exp.serving.duration_s)
        except RunFailure as e:
            sensor.end()
            if gen.result is not None:  # the requests so far, as a finished load keeps them
                write_jsonl(out_dir / REQUESTS_FILE, figures.request_lines(gen.result, None, exp.slo))
            raise RunFailure(f"{e} (each request's outcome in {REQUESTS_FILE}); the last lines of "
                             f"{SERVER_LOG}:\n{log_tail(server.log_path)}", reason=e.reason) from e
        reading = sensor.end()
        edges = (host_start, host.snapshot())
    return Served(load, reading, (before + after) / 2, (after - before) / 2, load_s, warm,
                  planned, info, preload, loaded, edges)


def run_serving(spec: RunSpec, out_dir: Path, *, sensor: Sensor | None = None,
                host: HostProbe | None = None) -> ExperimentResult:
    """Run the serving protocol for one experiment and write its files into ``out_dir``."""
    t_start = time.perf_counter()
    exp = spec.experiment
    file = read_requests_file(spec)  # a bad requests file costs no server start
    host = host or HostProbe()
    sensor = sensor or select_sensor(exp.device, spec.gpu_uuids, library=spec.gpu_library)
    try:
        got = _serve(spec, out_dir, sensor, host, file)
    finally:
        activity.publish(activity.Activity.NO_CONTEXT)  # the server is gone: no model, no context
        sensor.close()
    return _finish(spec, out_dir, sensor, host, got, t_start)


def _fail_on_errors(got: Served) -> None:
    bad = [r for r in got.load.records if r.status in ("error", "timeout")]
    if bad:
        raise RunFailure(
            f"{len(bad)} of {len(got.load.records)} requests failed (request_errors {len(bad)}); "
            f"the first: request {bad[0].index}: {bad[0].error} (every request is in "
            "requests.jsonl, the server's output in server.log)",
            reason=FailureReason.REQUEST_ERRORS)


def _window(got: Served, span: SteadySpan) -> ServingWindow:
    """The steady window's reading and counts, as the offline figures read a window."""
    t0 = got.sensor_start_s
    reading = crop(got.reading, span.start_s - t0, span.end_s - t0, got.clock_s)
    inputs, outputs, finished, equivalents = count_window(got.load.records, span.start_s,
                                                          span.end_s)
    ok = [r for r in got.load.records if r.status == "ok"]
    wall = time.time() - time.perf_counter()
    return ServingWindow(
        reading=reading, requests=[(0, r.index, r.timing()) for r in ok], iterations=1,
        duration_s=span.end_s - span.start_s, start_unix=wall + span.start_s,
        end_unix=wall + span.end_s, ended_by="target", counted_input_tokens=inputs,
        counted_output_tokens=outputs, request_equivalents=equivalents, finished=finished,
    )


def _span(exp: Experiment, load: LoadResult) -> SteadySpan:
    """The steady window of this load (B: the engine's batch limit, or a smaller concurrency)."""
    batch = exp.options.max_running_requests()
    if exp.serving.concurrency is not None:
        batch = min(batch or exp.serving.concurrency, exp.serving.concurrency)
    return steady_span(load.records, batch, (load.start_s, load.end_s))


def _serving_block(exp: Experiment, got: Served, span: SteadySpan, window: ServingWindow,
                   energy: Energy) -> ServingResult:
    """result.json's serving block: the load, the window, the running batch, goodput."""
    load = got.load
    serving = figures.serving_summary(exp, load, span, energy, window.finished,
                                      window.request_count, got.info["server_argv"],
                                      requests_sha256(got.planned))
    serving.rule = RULE
    serving.mean_running_requests = figures.gauge_mean(load, span.start_s, span.end_s)
    support = exp.spec.serving
    if serving.mean_running_requests is not None and support is not None:
        serving.running_source = f"{support.running_gauge} from {support.metrics_path}"
    return serving


def _throughput(window: ServingWindow) -> Throughput:
    """Tokens and finished requests per second of the steady window."""
    s = window.window_s
    if s <= 0:
        return Throughput(output_tokens_per_s=0.0, total_tokens_per_s=0.0, requests_per_s=0.0)
    return Throughput(output_tokens_per_s=window.output_tokens / s,
                      total_tokens_per_s=(window.input_tokens + window.output_tokens) / s,
                      requests_per_s=window.finished / s)


def _timings(got: Served, window: ServingWindow, t_start: float) -> Timings:
    return Timings(
        baseline_s=got.preload.reading.duration_s if got.preload is not None else 0.0,
        load_s=got.load_s,
        loaded_idle_s=got.loaded.reading.duration_s if got.loaded is not None else None,
        warmup_s=got.warm.duration_s, window_s=window.window_s,
        total_s=time.perf_counter() - t_start,
        window_start_unix=window.start_unix, window_end_unix=window.end_unix)


def _finish(spec: RunSpec, out_dir: Path, sensor: Sensor, host: HostProbe, got: Served,
            t_start: float) -> ExperimentResult:
    """Write requests.jsonl and timeseries.csv; fail on request errors; write result.json."""
    exp = spec.experiment
    span = _span(exp, got.load)
    write_jsonl(out_dir / REQUESTS_FILE, figures.request_lines(got.load, span, exp.slo))
    baselines = {n: b.reading for n, b in (("idle", got.preload), ("loaded_idle", got.loaded))
                 if b is not None}
    write_timeseries(out_dir / "timeseries.csv", {**baselines, "load": got.reading})
    _fail_on_errors(got)
    window = _window(got, span)
    window.target = window_target(exp.measurement, exp.device, None)
    energy = energy_figures(window, sensor, got.preload, got.loaded,
                            exp.measurement.sample_interval_ms)
    serving = _serving_block(exp, got, span, window, energy)
    start, end = got.host
    ok = [r.timing() for r in got.load.records if r.status == "ok"]
    result = ExperimentResult(
        run=spec.run, experiment=exp, backend_info=got.info,
        environment=run_environment(spec, sensor, check_devices(None, sensor),
                                    serving.requests_sha256),
        timings=_timings(got, window, t_start),
        tokens=Tokens(requests=window.finished, input_tokens=window.input_tokens,
                      output_tokens=window.output_tokens, iterations=1,
                      prompts_sha256=serving.requests_sha256),
        throughput=_throughput(window),
        latency=latency_of(ok, True, got.info),
        energy=energy,
        prefill=PrefillSplit(reason="unavailable: serving mode runs no prefill-only pass"),
        warmup=got.warm,
        compute=Compute(peak_memory_used_bytes=peak_memory_used_bytes([window.reading],
                                                                      sensor.devices)),
        steady_state=steady_verdict(steady_state(window, sensor.devices, exp.measurement),
                                    serving),
        interference=interference(start, end, got.load.end_s - got.load.start_s,
                                  host.cpu_count(), None),
        model=identify_for_agent(exp.model, spec.model_path, spec.model_fingerprint),
        datasets=spec.datasets,
        gpu_settings=spec.gpu_settings,
        serving=serving,
    )
    return write_result(out_dir, result, {**baselines, "window": window.reading}, sensor,
                        serving_warnings(result))
