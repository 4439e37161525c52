"""A small study end to end in real containers, and the same study through the local runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest

REPO = Path(__file__).resolve().parents[2]

STUDY = """
name: itest
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 4, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.2, prefill_split: true}}
sweep:
  batch_size: [1, 4]
  precision: [fp32, bf16]
execution: {{cycles: 1, order: sequential, timeout_s: 300, runner: {runner}}}
output_dir: {out}
"""


def run_study(tmp_path: Path, model: Path, runner: str) -> Path:
    out = tmp_path / "results"
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(model=model, runner=runner, out=out))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "study", "run", str(study)],
        capture_output=True, text=True, cwd=REPO, timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Runner: {runner}" in proc.stdout
    (study_dir,) = list(out.iterdir())
    return study_dir


def check_results(study_dir: Path) -> Manifest:
    for name in ("study.yaml", "plan.json", "manifest.json", "results.csv", "results.parquet"):
        assert (study_dir / name).exists(), name
    manifest = read_model(study_dir / "manifest.json", Manifest)
    assert manifest.state == "complete"
    assert len(manifest.runs) == 4
    for rec in manifest.runs:
        assert rec.status == "done", (rec.run_id, rec.reason, rec.message)
        run_dir = study_dir / "runs" / rec.run_id
        for name in ("config.json", "result.json", "requests.jsonl", "timeseries.csv",
                     "container.log"):
            assert (run_dir / name).exists(), (rec.run_id, name)
        result = read_model(run_dir / "result.json", ExperimentResult)
        w = result.experiment.workload
        assert result.tokens.requests == w.num_prompts * result.tokens.iterations
        assert result.tokens.output_tokens == result.tokens.requests * w.output_tokens
        assert result.tokens.input_tokens == result.tokens.requests * w.input_tokens
        lines = (run_dir / "requests.jsonl").read_text().splitlines()
        assert len(lines) == result.tokens.requests
        assert all(json.loads(line)["output_tokens"] == w.output_tokens for line in lines)
        assert result.energy.energy_method == "unavailable"
        assert result.energy.energy_j is None and result.energy.unavailable_reason
    return manifest


@pytest.mark.docker
def test_study_runs_one_container_per_run(tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    study_dir = run_study(tmp_path, tiny_model, "docker")
    manifest = check_results(study_dir)
    assert manifest.runner == "docker"
    ids = [r.container_id for r in manifest.runs]
    assert all(ids) and len(set(ids)) == len(ids)
    assert all(r.image and r.image.id and r.image.tag == pytorch_cpu_image for r in manifest.runs)
    left = docker_client.containers.list(all=True, filters={"label": "org.harness.study=itest"})
    assert left == [], "a container was left behind"
    result = read_model(study_dir / "runs" / manifest.runs[0].run_id / "result.json",
                        ExperimentResult)
    assert result.environment["in_container"] is True
    assert result.environment["image"]["tag"] == pytorch_cpu_image


def test_study_through_local_runner(tmp_path, tiny_model):
    study_dir = run_study(tmp_path, tiny_model, "local")
    manifest = check_results(study_dir)
    assert manifest.runner == "local"
    assert all(r.container_id is None for r in manifest.runs)


def prompts_study(model: Path, runner: str, out: Path) -> str:
    """One run of the tiny model on data/prompts.jsonl, relative to the study file."""
    return json.dumps({
        "name": f"prompts-{runner}",
        "experiment": {
            "model": str(model), "backend": "pytorch", "device": "cpu", "precision": "fp32",
            "batch_size": 2,
            "workload": {"dataset": "data/prompts.jsonl", "num_prompts": 3, "input_tokens": 12,
                         "output_tokens": 4},
            "measurement": {"warmup_batches": 0, "baseline_s": 0, "min_window_s": 0,
                            "prefill_split": False},
        },
        "execution": {"cycles": 1, "runner": runner, "timeout_s": 300},
        "output_dir": str(out),
    })


@pytest.mark.docker
def test_a_prompts_file_outside_the_repository_reaches_both_runners(
        tmp_path, docker_client, pytorch_cpu_image, tiny_model):
    """Relative to the study file (run from the repository), mounted read-only in containers,
    read at its host path by the local runner: the same bytes and the same prompt tokens."""
    import hashlib

    folder = tmp_path / "my-study"
    prompts = folder / "data" / "prompts.jsonl"
    prompts.parent.mkdir(parents=True)
    texts = ["Hello there", "", "A much longer prompt that the workload cuts to twelve tokens, "
             "whatever the tokenizer makes of it", "short", "never read: num_prompts is 3"]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts))
    sha = hashlib.sha256(prompts.read_bytes()).hexdigest()
    token_hashes = {}
    for runner, agent_path in (("docker", "/datasets/workload.dataset/prompts.jsonl"),
                               ("local", str(prompts))):
        study = folder / f"{runner}.yaml"
        out = folder / f"results-{runner}"
        study.write_text(prompts_study(tiny_model, runner, out))
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "study", "run", str(study)],
                              capture_output=True, text=True, cwd=REPO, timeout=600,
                              env={**os.environ, "COLUMNS": "200"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (study_dir,) = out.iterdir()
        manifest = read_model(study_dir / "manifest.json", Manifest)
        (rec,) = manifest.runs
        assert rec.status == "done", rec.message
        result = read_model(study_dir / "runs" / rec.run_id / "result.json", ExperimentResult)
        (entry,) = result.datasets
        assert (entry.field, entry.source, entry.path, entry.sha256, entry.agent_path) == (
            "workload.dataset", "data/prompts.jsonl", str(prompts), sha, agent_path)
        assert manifest.datasets == [entry.model_copy(update={"agent_path": None})]
        lengths = [json.loads(line)["input_tokens"]
                   for line in (study_dir / "runs" / rec.run_id / "requests.jsonl").read_text()
                   .splitlines()]
        assert len(lengths) == 3 * result.tokens.iterations
        assert max(lengths) == 12 and min(lengths) < 12  # the long one cut, the others not
        token_hashes[runner] = result.tokens.prompts_sha256
        report = (study_dir / "report" / "report.md").read_text()
        assert f"prompts file data/prompts.jsonl ({prompts}, sha256 {sha})" in report
    assert token_hashes["docker"] == token_hashes["local"] is not None
