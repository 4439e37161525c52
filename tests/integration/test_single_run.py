"""`harness run EXPERIMENT.yaml`: one experiment without a study, locally and in a container."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.io import read_model
from harness.results.schema import ExperimentResult, RunSpec

REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = """\
model: {model}
backend: pytorch
device: cpu
precision: fp32
batch_size: 2
workload: {{num_prompts: 2, input_tokens: 8, output_tokens: 2, seed: 1}}
measurement: {{warmup_batches: 0, baseline_s: 0, min_window_s: 0.2, prefill_split: false}}
"""


def harness_run(tmp_path: Path, model: Path, runner: str) -> subprocess.CompletedProcess[str]:
    file = tmp_path / "experiment.yaml"
    file.write_text(EXPERIMENT.format(model=model), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(file), "--runner", runner,
         "--output-dir", str(tmp_path / "single")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def run_folders(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "single").iterdir())


def check_done(tmp_path: Path, model: Path, runner: str) -> tuple[Path, ExperimentResult]:
    proc = harness_run(tmp_path, model, runner)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Runner: {runner}" in proc.stdout and "done" in proc.stdout
    (run_dir,) = run_folders(tmp_path)
    result = read_model(run_dir / "result.json", ExperimentResult)
    assert result.run.study == "single" and result.run.run_id == run_dir.name
    assert run_dir.name.startswith(result.experiment.id + "-")
    spec = read_model(run_dir / "config.json", RunSpec)
    assert spec.runner == runner
    for name in ("requests.jsonl", "timeseries.csv", "container.log"):
        assert (run_dir / name).is_file(), name
    again = harness_run(tmp_path, model, runner)  # a second run never overwrites the first
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(run_folders(tmp_path)) == 2 and (run_dir / "result.json").is_file()
    return run_dir, result


def test_one_experiment_through_the_local_runner(tmp_path, tiny_model):
    run_dir, _ = check_done(tmp_path, tiny_model, "local")
    assert read_model(run_dir / "config.json", RunSpec).image is None  # this Python, no image


def test_a_missing_model_is_refused_before_the_run(tmp_path):
    """As `study run` does: exit 2, nothing made (a run that fails later exits 4: unit tests)."""
    proc = harness_run(tmp_path, tmp_path / "not-here", "local")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the experiment cannot run as it is; nothing was started" in proc.stderr
    assert str(tmp_path / "not-here") in proc.stderr
    assert not (tmp_path / "single").exists()


@pytest.mark.docker
def test_one_experiment_in_a_container(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    _, result = check_done(tmp_path, tiny_model, "docker")
    assert result.environment["in_container"] is True
    assert result.environment["image"]["tag"] == pytorch_cpu_image
    left = docker_client.containers.list(all=True, filters={"label": "org.harness.study=single"})
    assert left == [], "a container was left behind"
