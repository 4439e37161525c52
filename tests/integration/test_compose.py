"""`docker-compose run --rm pytorch` (Compose v1, the one on these machines) runs one experiment."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.results.io import read_model
from harness.results.schema import ExperimentResult

REPO = Path(__file__).resolve().parents[2]

EXPERIMENT = """
model: models/tiny
backend: pytorch
device: cpu
precision: fp32
batch_size: 2
workload: {num_prompts: 4, input_tokens: 16, output_tokens: 8}
measurement: {warmup_batches: 1, baseline_s: 0, min_window_s: 0.2}
"""


PROMPTS = "".join(json.dumps({"prompt": t}) + "\n" for t in ("one", "two words", "three more words"))


def run_on_prompts(compose: str, tmp_path: Path, env: dict[str, str]) -> Path:
    """The experiment on a prompts file in $DATASETS_DIR, named relative to the experiment file."""
    folder = tmp_path / "mine"
    (folder / "datasets").mkdir(parents=True)
    (folder / "datasets" / "prompts.jsonl").write_text(PROMPTS)
    experiment = folder / "experiment.yaml"
    experiment.write_text(EXPERIMENT.replace(
        "workload: {", "workload: {dataset: datasets/prompts.jsonl, ").replace(
        "num_prompts: 4", "num_prompts: 3"))
    results = tmp_path / "results-prompts"
    results.mkdir()
    proc = subprocess.run(
        [compose, "-p", "harnesstest", "run", "--rm", "pytorch"], cwd=REPO,
        env={**env, "EXPERIMENT": str(experiment), "RESULTS_DIR": str(results),
             "DATASETS_DIR": str(folder / "datasets")},
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (out,) = results.iterdir()
    return out


@pytest.mark.docker
def test_compose_v1_runs_one_experiment(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    compose = shutil.which("docker-compose")
    if compose is None:
        message = "docker-compose (Compose v1) is not installed; scripts/ensure-docker.sh installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(EXPERIMENT)
    results = tmp_path / "results"
    results.mkdir()
    env = {
        **os.environ,
        "EXPERIMENT": str(experiment),
        "RESULTS_DIR": str(results),
        "MODELS_DIR": str(tiny_model.parent),
    }
    for _ in range(2):  # a second run must not overwrite the first
        proc = subprocess.run(
            [compose, "-p", "harnesstest", "run", "--rm", "pytorch"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    outputs = sorted(results.iterdir())
    assert len(outputs) == 2
    prompts_run = run_on_prompts(compose, tmp_path, env)
    for out in outputs:
        result = read_model(out / "result.json", ExperimentResult)
        assert result.tokens.output_tokens == result.tokens.requests * 8
        assert result.environment["in_container"] is True
        assert (out / "requests.jsonl").exists()
    result = read_model(prompts_run / "result.json", ExperimentResult)
    (entry,) = result.datasets
    assert entry.agent_path == entry.path == "/datasets/prompts.jsonl"
    assert entry.sha256 == hashlib.sha256(PROMPTS.encode()).hexdigest()
    assert result.tokens.requests == 3 * result.tokens.iterations
    left = docker_client.containers.list(
        all=True, filters={"label": "com.docker.compose.project=harnesstest"}
    )
    assert left == [], "docker-compose run --rm left a container behind"
