"""The node side of a Slurm job on a real NVIDIA GPU (marker gpu): the GPU Slurm assigned
(SLURM_JOB_GPUS) is the one the run measures, through the local runner.

No Slurm is needed: the test stands in for slurmstepd by setting the variables it sets, then
runs ``harness.controller.slurm.node`` on a study folder as the job script does.
Run on a GPU machine: ``pytest -m gpu tests/gpu/test_slurm_node_gpu.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from harness.controller.lifecycle import start_study
from harness.controller.slurm.job import NODE_RECORD, NodeRecord
from harness.controller.slurm.node import run_node
from harness.models import write_tiny_model
from harness.results.io import read_model
from harness.results.schema import ExperimentResult

pytestmark = pytest.mark.gpu


def test_node_runs_on_the_gpu_slurm_assigned(tmp_path, monkeypatch):
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    last = torch.cuda.device_count() - 1
    write_tiny_model(tmp_path / "models" / "tiny")
    study = {
        "name": "slurm-gpu",
        "experiment": {
            "model": "models/tiny", "backend": "pytorch", "device": "cuda", "precision": "bf16",
            "batch_size": 4,
            "workload": {"num_prompts": 8, "input_tokens": 32, "output_tokens": 16},
            "measurement": {"warmup_batches": 1, "baseline_s": 2, "min_window_s": 2,
                            "gpu_min_window_s": 5, "prefill_split": False},
        },
        "execution": {"runner": "local", "executor": "slurm", "gpus": list(range(last + 1)),
                      "slurm": {"time": "10", "mem": "8G"}},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    monkeypatch.chdir(tmp_path)
    prepared = start_study(Path("study.yaml"), runner="local", output_dir=tmp_path / "out")
    (planned,) = prepared.run.plan.runs
    (prepared.study_dir / "runs" / planned.run_id).mkdir(parents=True)
    env = {**os.environ, "SLURM_JOB_ID": "4242", "SLURM_JOB_GPUS": str(last)}
    node = run_node(prepared.study_dir.resolve(), planned.run_id, env)
    assert node.record.status == "done", node.record.message
    assert node.gpus == [last] and node.job_id == "4242"
    run_dir = prepared.study_dir / "runs" / planned.run_id
    assert read_model(run_dir / NODE_RECORD, NodeRecord).record.status == "done"
    result = read_model(run_dir / "result.json", ExperimentResult)
    assert result.energy.energy_method in ("nvml_counter", "nvml_power_integration")
    assert result.energy.energy_j and result.energy.energy_j > 0
    assert result.environment["device_check"]["verdict"] == "match"
