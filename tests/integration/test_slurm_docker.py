"""Studies through a real single-node Slurm cluster into real containers (scripts/ensure-slurm.sh).

(a)+(b): two runs submitted detached; one job is cancelled with scancel while its container
runs; status records both (job ids, node, slurm_cancelled), resume completes the study with
every run done exactly once. (c): a job past its time limit is slurm_timeout; a resume with a
fixed study file completes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.controller.slurm.states import is_live
from harness.results.io import read_model
from harness.results.reasons import FailureReason
from harness.results.schema import Manifest

pytestmark = [pytest.mark.docker, pytest.mark.slurm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]

STUDY = """
name: {name}
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 4, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: {window_s},
                 prefill_split: false}}
sweep: {sweep}
execution:
  timeout_s: 300
  runner: docker
  executor: slurm
  slurm: {slurm}
output_dir: {out}
"""


def write(tmp_path: Path, file: str, **fields) -> Path:
    path = tmp_path / file
    path.write_text(STUDY.format(out=tmp_path / "results", **fields))
    return path


def harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=600, env={**os.environ, "COLUMNS": "200"})


def manifest(study_dir: Path) -> Manifest:
    return read_model(study_dir / "manifest.json", Manifest)


def wait_for(what: str, check, timeout_s: float = 120.0):
    began = time.monotonic()
    while time.monotonic() - began < timeout_s:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what} after {timeout_s:g} s")


def job_live(job_id: str) -> bool:
    proc = subprocess.run(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and is_live(proc.stdout.strip() or "COMPLETED")


def assert_done_once(study_dir: Path, node: str) -> Manifest:
    final = manifest(study_dir)
    assert final.state == "complete", final.message
    for rec in final.runs:
        assert rec.status == "done", (rec.run_id, rec.reason, rec.message)
        assert rec.slurm is not None and rec.slurm.job_id and rec.slurm.node == node
        assert rec.runner == "docker" and rec.container_id
        assert (study_dir / "runs" / rec.run_id / "result.json").is_file()
    kept = list((study_dir / "runs" / ".attempts").glob("*/result.json"))
    assert kept == []  # no earlier attempt completed: each run was done exactly once
    return final


def test_detach_cancel_status_resume(tmp_path, tiny_model, pytorch_cpu_image, slurm_cluster,
                                     docker_client):
    study = write(tmp_path, "study.yaml", name="slurm-ab", model=tiny_model, window_s=4,
                  sweep="{batch_size: [1, 2]}",
                  slurm='{time: "0:10:00", mem: 2G, max_jobs: 2, poll_s: 1}')
    proc = harness("study", "run", str(study), "--detach")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = list((tmp_path / "results").iterdir())
    first, second = manifest(study_dir).runs
    assert first.status == second.status == "running" and first.slurm and second.slurm

    def agent_running(run_id: str) -> bool:
        """Whether the run's agent has started (it then stops at once on SIGTERM)."""
        found = docker_client.containers.list(filters={"label": f"org.harness.run={run_id}"})
        return any(b"[agent] run" in c.logs() for c in found)

    wait_for(f"the agent of run {first.run_id}", lambda: agent_running(first.run_id))
    subprocess.run(["scancel", first.slurm.job_id], check=True)
    wait_for("both jobs to end", lambda: not job_live(first.slurm.job_id)
             and not job_live(second.slurm.job_id), timeout_s=180)
    assert not docker_client.containers.list(
        all=True, filters={"label": f"org.harness.run={first.run_id}"})  # stopped and removed

    proc = harness("study", "status", str(study_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = {r.run_id: r for r in manifest(study_dir).runs}
    cancelled, done = after[first.run_id], after[second.run_id]
    assert (cancelled.status, cancelled.reason) == ("failed", FailureReason.SLURM_CANCELLED)
    assert cancelled.slurm.state.startswith("CANCELLED") and cancelled.slurm.node == slurm_cluster
    assert done.status == "done" and done.slurm.job_id == second.slurm.job_id
    assert "slurm_cancelled" in proc.stdout

    proc = harness("study", "resume", str(study_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    final = {r.run_id: r for r in assert_done_once(study_dir, slurm_cluster).runs}
    assert final[first.run_id].attempts == 2 and final[second.run_id].attempts == 1
    assert final[first.run_id].slurm.job_id not in (first.slurm.job_id, second.slurm.job_id)
    assert (study_dir / "runs" / first.run_id / "slurm-job.sh").is_file()


@pytest.mark.heavy  # the cancel test above covers submit, track, status and resume
def test_time_limit_then_resume(tmp_path, tiny_model, pytorch_cpu_image, slurm_cluster):
    common = {"name": "slurm-c", "model": tiny_model, "window_s": 0.2,
              "sweep": "{batch_size: [1]}"}
    # the node's setup outlasts the 1-minute limit, the shortest Slurm has
    slow = write(tmp_path, "slow.yaml", **common,
                 slurm='{time: "1", mem: 2G, poll_s: 1, setup: ["sleep 300"]}')
    proc = harness("study", "run", str(slow))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (study_dir,) = list((tmp_path / "results").iterdir())
    (rec,) = manifest(study_dir).runs
    assert (rec.status, rec.reason) == ("failed", FailureReason.SLURM_TIMEOUT), rec.message
    assert rec.slurm.state == "TIMEOUT" and "TIME LIMIT" in (rec.message or "")

    fixed = write(tmp_path, "fixed.yaml", **common, slurm='{time: "5", mem: 2G, poll_s: 1}')
    proc = harness("study", "resume", str(study_dir), "--file", str(fixed), "--force")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (rec,) = assert_done_once(study_dir, slurm_cluster).runs
    assert rec.attempts == 2
