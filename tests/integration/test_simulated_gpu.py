"""A study on simulated GPUs end to end: the tiny model computes on the CPU and drives the
simulated GPUs' power through the activity bus; the real protocol, sensors and runtimes measure
them, locally and in a container, and the simulator's own truth checks the result."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.analysis.report.blocks import SIMULATED_NOTE
from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest, RunSpec
from harness.testing.simgpu.truth import TRUTH_FILE, phase_energy, read_truth

REPO = Path(__file__).resolve().parents[2]

STUDY = """
name: simgpu
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 2, input_tokens: 8, output_tokens: 4, seed: 1}}
  measurement: {{warmup_batches: 1, baseline_s: 0.3, min_window_s: 1.0, sample_interval_ms: 20,
                 prefill_split: false}}
execution:
  runner: {runner}
  timeout_s: 300
  gpus: [1]
  simulated_gpus: {{count: 2, counter_period_ms: 5}}
output_dir: {out}
"""


def run_simulated_study(tmp_path: Path, model: Path, runner: str) -> tuple[Path, ExperimentResult]:
    out = tmp_path / "results"
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(model=model, runner=runner, out=out))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "study", "run", str(study)],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = list(out.iterdir())
    manifest = read_model(study_dir / "manifest.json", Manifest)
    (record,) = manifest.runs
    assert record.status == "done", (record.reason, record.message)
    run_dir = study_dir / "runs" / record.run_id
    result = read_model(run_dir / "result.json", ExperimentResult)

    # the run measured simulated GPU 1 (execution.gpus), and says so everywhere
    spec = read_model(run_dir / "config.json", RunSpec)
    assert spec.gpu_library.kind == "simulated" and spec.gpu_uuids == [
        spec.gpu_library.simulated.uuid(1)]  # type: ignore[union-attr]
    e = result.energy
    assert e.energy_method == "simulated" and e.readout == "counter"
    assert [d.energy_method for d in e.devices] == ["simulated"]
    assert e.host is not None  # the host's CPU and DRAM beside the GPU (no RAPL here)
    report = (study_dir / "report" / "report.md").read_text().splitlines()[0]
    assert report.endswith(SIMULATED_NOTE)

    # the truth the simulated GPUs wrote: the engine's states, and the energy of the window
    truth = read_truth(run_dir / TRUTH_FILE)
    states = [s for _, s in truth.device(1).states]
    assert states[:3] == ["no_context", "loaded_idle", "prefill"] and "decode" in states
    assert [s for _, s in truth.device(0).states] == ["no_context"]  # not this run's GPU
    assert e.energy_j == pytest.approx(phase_energy(truth, result, "window"), rel=0.1)
    assert e.idle_power_w == pytest.approx(truth.config.power_w.no_context, rel=0.1)
    return run_dir, result


def test_simulated_gpus_through_the_local_runner(tmp_path, tiny_model):
    _, result = run_simulated_study(tmp_path, tiny_model, "local")
    assert result.environment["runner"] == "local"


@pytest.mark.docker
def test_simulated_gpus_in_a_container(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    run_dir, result = run_simulated_study(tmp_path, tiny_model, "docker")
    assert result.environment["in_container"] is True
    assert result.environment["image"]["tag"] == pytorch_cpu_image
    # the container saw the settings folder read-only and wrote its truth into the run folder
    spec = read_model(run_dir / "config.json", RunSpec)
    assert spec.gpu_library.state_dir == "/simgpu-state"
    assert spec.gpu_library.truth_file == f"/results/{TRUTH_FILE}"
