"""A backend that lives under tests/ is planned and run through the local runner.

It is registered only through the ``harness.backends`` entry-point group (a dist-info folder on
PYTHONPATH, as `pip install` of a plug-in would leave), with no edit under harness/.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "tests" / "plugins"


def harness(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from harness.cli import main; main()", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    dist = site / "toy_backend_harness-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-backend-harness\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.backends]\ntoy = toy_backend:SPEC\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGINS), str(REPO)])
    return env


def write_study(tmp_path: Path, model: Path) -> Path:
    study = tmp_path / "toy.yaml"
    study.write_text(f"""
name: toy-plugin
experiment:
  model: {model}
  backend: toy
  device: cpu
  precision: fp32
  workload: {{num_prompts: 4, input_tokens: 8, output_tokens: 4}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.2, sample_interval_ms: 50}}
  toy: {{step_ms: 2}}
sweep:
  batch_size: [1, 2]
  toy.step_ms: [1, 3]
execution: {{runner: local, cycles: 1}}
""")
    return study


def test_an_out_of_tree_backend_plans_and_runs(tmp_path: Path, tiny_model: Path, plugin_env):
    study = write_study(tmp_path, tiny_model)
    planned = harness(["study", "plan", str(study)], plugin_env, tmp_path)
    assert planned.returncode == 0, planned.stderr + planned.stdout
    assert "toy" in planned.stdout and "4 runs" in planned.stdout

    out = tmp_path / "results"
    ran = harness(["study", "run", str(study), "--runner", "local", "--output-dir", str(out)],
                  plugin_env, tmp_path)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    (study_dir,) = out.iterdir()
    manifest = json.loads((study_dir / "manifest.json").read_text())
    assert manifest["state"] == "complete"
    steps = set()
    for rec in manifest["runs"]:
        result = json.loads((study_dir / "runs" / rec["run_id"] / "result.json").read_text())
        assert result["backend_info"]["engine"] == "toy"
        assert result["backend_info"]["engine_version"] == "0.1"
        assert result["experiment"]["backend"] == "toy"
        steps.add(result["experiment"]["toy"]["step_ms"])
        assert result["latency"]["per_token_timestamps"] is True
    assert steps == {1, 3}
    report = (study_dir / "report" / "report.md").read_text()
    assert "toy 0.1" in report


def test_without_the_plugin_the_backend_is_unknown(tmp_path: Path, tiny_model: Path):
    study = write_study(tmp_path, tiny_model)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    planned = harness(["study", "plan", str(study)], env, tmp_path)
    assert planned.returncode == 2
    assert "backend: Input should be 'pytorch', 'vllm' or 'tensorrt_llm' (got 'toy')" in (
        planned.stderr + planned.stdout)
