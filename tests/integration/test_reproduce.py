"""A study in real containers, bundled, verified and reproduced with the same image."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

#: the reviewer flow (test_reviewer_flow.py) bundles, verifies and reproduces in containers too;
#: this one adds pip freeze captured inside the image and a reproduce by tag
pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parents[2]

STUDY = """
name: repro-docker
description: Two batch sizes of a tiny random model in containers.
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 1
  workload: {{num_prompts: 8, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.5, prefill_split: false}}
sweep:
  batch_size: [1, 2]
execution: {{cycles: 2, order: interleaved, timeout_s: 300, runner: docker}}
output_dir: {out}
"""


def harness_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=REPO,
        timeout=1200, env={**os.environ, "COLUMNS": "250"},
    )


@pytest.mark.docker
def test_bundle_verify_and_reproduce_in_containers(
    docker_client, pytorch_cpu_image: str, tiny_model: Path, tmp_path: Path
) -> None:
    study_file = tmp_path / "study.yaml"
    study_file.write_text(STUDY.format(model=tiny_model, out=tmp_path / "results"))
    ran = harness_cli("study", "run", str(study_file))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (study_dir,) = (tmp_path / "results").iterdir()
    bundle = tmp_path / "repro.tar.gz"
    made = harness_cli("bundle", "create", str(study_dir), "-o", str(bundle))
    assert made.returncode == 0, made.stdout + made.stderr

    checked = harness_cli("bundle", "verify", str(bundle))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    import tarfile

    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        prefix = f"{study_dir.name}/provenance/images/harness_pytorch_cpu"
        assert f"{prefix}/Dockerfile" in names
        assert f"{prefix}/packages.txt" in names
        assert f"{prefix}/pip-freeze.txt" in names, made.stdout  # captured inside the image
        freeze = tar.extractfile(f"{prefix}/pip-freeze.txt").read().decode()
        prov = json.loads(tar.extractfile(f"{study_dir.name}/provenance/provenance.json").read())
    assert "torch==" in freeze
    (image,) = prov["images"]
    assert image["tag"] == pytorch_cpu_image
    ran_with = json.loads((study_dir / "manifest.json").read_text())["runs"]
    assert {r["image"]["id"] for r in ran_with} == {image["id"]}
    assert image["id"].startswith("sha256:")

    again = harness_cli("bundle", "reproduce", str(bundle), "--runs", "2", "--runner", "docker",
                        "--output-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"using the original image {pytorch_cpu_image}" in again.stdout
    assert "Original vs reproduced" in again.stdout
    (new_dir,) = (tmp_path / "again").iterdir()
    manifest = json.loads((new_dir / "manifest.json").read_text())
    assert {r["image"]["id"] for r in manifest["runs"]} == {image["id"]}
    comparison = pd.read_csv(new_dir / "comparison.csv")
    tps = comparison[comparison["metric"] == "output_tokens_per_s"]
    assert len(tps) == 2 and (tps["ratio_new_to_original"] > 0).all()
