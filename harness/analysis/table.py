"""One flat row per run: the swept parameters and every headline figure, units in names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.uncertainty import budget_columns
from harness.config.sweep import Plan
from harness.results.io import read_model
from harness.results.manifest import load as load_manifest
from harness.results.schema import ExperimentResult


def load_plan(study_dir: Path) -> Plan:
    """The study's plan.json."""
    return read_model(study_dir / "plan.json", Plan)


def serving_columns(result: ExperimentResult) -> dict[str, Any]:
    """Serving mode's columns (empty for offline runs, which then have none of them)."""
    s, lat = result.serving, result.latency
    if s is None:
        return {}
    return {
        "mode": result.experiment.mode,
        "ttft_p99_s": lat.ttft.p99_s,
        "tpot_p90_s": lat.tpot.p90_s,
        "itl_p90_s": lat.itl.p90_s,
        "achieved_request_rate": s.achieved_request_rate,
        "steady_window": s.window_found,
        "steady_verdict": result.steady_state.verdict,
        "mean_running_requests": s.mean_running_requests,
        "output_tokens_per_s_per_user": s.output_tokens_per_s_per_user,
        "slo_attainment": s.slo_attainment,
        "goodput_requests_per_s": s.goodput_requests_per_s,
        "j_per_good_request": s.j_per_good_request,
    }


#: why a run has no host energy when its result has no host part at all
NO_HOST_PART = ("no host part: only GPU runs measure the host's CPU and DRAM beside their GPUs "
                "(a CPU run's energy_j is the CPU's own)")


def host_columns(result: ExperimentResult) -> dict[str, Any]:
    """The host's CPU and DRAM energy beside the GPUs, and the total; null (never 0) if unknown."""
    e = result.energy
    host = e.host
    if host is None:
        reason: str | None = NO_HOST_PART
    elif host.energy_j is None:
        reason = host.unavailable_reason or "the host's energy is unknown"
    else:
        reason = None
    return {
        "host_energy_j": host.energy_j if host is not None else None,
        "cpu_energy_j": host.cpu_energy_j if host is not None else None,
        "dram_energy_j": host.dram_energy_j if host is not None else None,
        "host_energy_unavailable_reason": reason,
        "total_energy_j": e.total_energy_j,
    }


def result_row(result: ExperimentResult) -> dict[str, Any]:
    """Flat columns of one result."""
    e, lat, thr = result.energy, result.latency, result.throughput
    exp = result.experiment
    return {
        "backend": exp.backend,
        "device": exp.device,
        "precision": exp.precision,
        "batch_size": exp.batch_size,
        "model": exp.model,
        "input_tokens": result.tokens.input_tokens,
        "output_tokens": result.tokens.output_tokens,
        "requests": result.tokens.requests,
        "iterations": result.tokens.iterations,
        "window_s": result.timings.window_s,
        "load_s": result.timings.load_s,
        "output_tokens_per_s": thr.output_tokens_per_s,
        "total_tokens_per_s": thr.total_tokens_per_s,
        "requests_per_s": thr.requests_per_s,
        "energy_method": e.energy_method,
        "energy_unavailable_reason": e.unavailable_reason,
        "energy_j": e.energy_j,
        **host_columns(result),
        "idle_power_w": e.idle_power_w,
        "dynamic_energy_j": e.dynamic_energy_j,
        "mean_power_w": e.mean_power_w,
        "peak_power_w": e.peak_power_w,
        "j_per_output_token": e.j_per_output_token,
        "j_per_token": e.j_per_token,
        "j_per_request": e.j_per_request,
        "wh_per_1k_requests": e.wh_per_1k_requests,
        "output_tokens_per_j": e.output_tokens_per_j,
        "prefill_energy_j": result.prefill.prefill_energy_j,
        "decode_energy_j": result.prefill.decode_energy_j,
        "ttft_p50_s": lat.ttft.p50_s,
        "ttft_p90_s": lat.ttft.p90_s,
        "itl_p50_s": lat.itl.p50_s,
        "tpot_mean_s": lat.tpot.mean_s,
        "e2e_mean_s": lat.e2e.mean_s,
        "e2e_p50_s": lat.e2e.p50_s,
        "e2e_p90_s": lat.e2e.p90_s,
        "e2e_p99_s": lat.e2e.p99_s,
        "flops": result.compute.flops,
        "peak_memory_allocated_bytes": result.compute.peak_memory_allocated_bytes,
        "loaded_idle_power_w": e.loaded_idle_power_w,
        "warnings": ";".join(w.code for w in result.warnings),
        **budget_columns(result),
        **serving_columns(result),
    }


def collect(study_dir: Path) -> pd.DataFrame:
    """One row per planned run (done or not), swept parameters as their own columns."""
    plan = load_plan(study_dir)
    manifest = load_manifest(study_dir)
    params = {p.id: p.params for p in plan.experiments}
    rows = []
    for rec in manifest.runs:
        row: dict[str, Any] = {
            "run_id": rec.run_id,
            "experiment_id": rec.experiment_id,
            "cycle": rec.cycle,
            "position": rec.position,
            "status": rec.status,
            "reason": rec.reason,
            "overlapped_with": ";".join(rec.overlapped_with),
        }
        row.update({f"param.{k}": v for k, v in params.get(rec.experiment_id, {}).items()})
        path = study_dir / "runs" / rec.run_id / "result.json"
        if rec.status == "done" and path.exists():
            row.update(result_row(read_model(path, ExperimentResult)))
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(study_dir: Path) -> pd.DataFrame:
    """Write results.csv and results.parquet; return the table."""
    table = collect(study_dir)
    table.to_csv(study_dir / "results.csv", index=False)
    table.to_parquet(study_dir / "results.parquet", index=False)
    return table
