"""Run the agent on one experiment in a subprocess, as the images do (shared by the GPU tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from harness.results.io import read_model
from harness.results.schema import ExperimentResult

REPO = Path(__file__).resolve().parents[2]


def run_agent(
    tmp: Path, experiment: dict, *, module: str = "harness.agent", env: dict | None = None
) -> ExperimentResult:
    """Write the experiment, run ``python -m module`` on it, return the result."""
    out = tmp / f"run-{len(list(tmp.glob('run-*')))}"
    out.mkdir(parents=True)
    path = out / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment))
    proc = subprocess.run(
        [sys.executable, "-m", module, "--experiment", str(path), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=1800,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]  # EXPID-TIMESTAMP
    return read_model(run_dir / "result.json", ExperimentResult)


def check_run(result: ExperimentResult, *, bursts: bool = False) -> None:
    """Tokens exact, per-request latency present, GPU energy measured by NVML.

    With ``bursts`` the engine may hand several tokens over at once (one arrival), so there
    are at most, not exactly, output_tokens - 1 inter-token latencies per request.
    """
    w = result.experiment.workload
    assert result.tokens.output_tokens == result.tokens.requests * w.output_tokens
    assert result.latency.per_token_timestamps is True
    assert result.latency.ttft.n == result.tokens.requests
    most = result.tokens.requests * (w.output_tokens - 1)
    if bursts:
        assert 0 < result.latency.itl.n <= most
        assert result.latency.itl.p50_s is not None and result.latency.itl.p50_s > 0
    else:
        assert result.latency.itl.n == most
    assert result.energy.energy_method != "unavailable", result.energy.unavailable_reason
    assert result.energy.energy_j and result.energy.energy_j > 0
