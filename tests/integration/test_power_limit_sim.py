"""GPU settings end to end on simulated GPUs with the local runner (no Docker): the power-limit
study runs and its report draws the energy-power-limit curve; a controller SIGKILLed mid-run
leaves its settings on the GPUs, and the next start restores them and says so; Ctrl+C
restores them at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}


def harness(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout, env=ENV)


def test_power_limit_study_draws_the_energy_power_limit_curve(tmp_path, tiny_model):
    study = yaml.safe_load((REPO / "studies" / "power-limit-sim.yaml").read_text())
    study["experiment"]["model"] = str(tiny_model)
    study["output_dir"] = str(tmp_path / "results")
    file = tmp_path / "power-limit-sim.yaml"
    file.write_text(yaml.safe_dump(study))
    started = time.monotonic()
    proc = harness("study", "run", str(file), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # every run line and the results table say the energy is simulated
    assert proc.stdout.count("SIMULATED") >= 5, proc.stdout
    print(f"power-limit-sim: {time.monotonic() - started:.1f} s")
    (study_dir,) = list((tmp_path / "results").iterdir())
    manifest = read_model(study_dir / "manifest.json", Manifest)
    limits = study["sweep"]["gpu.power_limit_w"]
    assert [r.status for r in manifest.runs] == ["done"] * len(limits)
    assert manifest.gpu_journal == []  # every change was restored
    for rec in manifest.runs:
        assert rec.gpu_settings is not None and rec.gpu_settings.restored is True
        result = read_model(study_dir / "runs" / rec.run_id / "result.json", ExperimentResult)
        requested = result.experiment.gpu.power_limit_w
        assert result.gpu_settings is not None
        assert result.gpu_settings.gpus[0].applied.power_limit_w == requested
        # the cap held in the measured window (simulated power is held at the limit)
        assert result.energy.mean_power_w is not None
        assert result.energy.mean_power_w <= requested * 1.02
    settings = json.loads((study_dir / "simulated-gpus" / "settings.json").read_text())
    assert settings["devices"]["0"]["power_limit_w"] == 700.0
    assert (study_dir / "report" / "figures" / "settings_gpu_power_limit_w.png").stat().st_size > 0
    report = (study_dir / "report" / "report.md").read_text()
    section = report.split("## GPU settings: gpu.power_limit_w", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    assert sorted(int(r.split("|")[1]) for r in rows) == sorted(limits)


STUDY = """
name: killed
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 2, input_tokens: 8, output_tokens: 4, seed: 1}}
  measurement: {{warmup_batches: 1, baseline_s: 0.3, loaded_idle_s: 0.3, min_window_s: 2.0,
                 sample_interval_ms: 20, prefill_split: false}}
  gpu: {{power_limit_w: 250, sm_clock_mhz: 1410}}
execution:
  runner: local
  timeout_s: 300
  gpus: [1]
  simulated_gpus: {{count: 2, counter_period_ms: 5}}
output_dir: {out}
"""


def start_until_applied(tmp_path: Path, model: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start a controller; return once GPU 1 holds the run's settings and its agent runs."""
    out = tmp_path / "results"
    file = tmp_path / "study.yaml"
    file.write_text(STUDY.format(model=model, out=out))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "study", "run", str(file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=REPO, env=ENV, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        dirs = list(out.iterdir()) if out.exists() else []
        if dirs and held(dirs[0]) == (250.0, [1410, 1410]) and list(
                dirs[0].glob("runs/*/container.log")):
            return proc, dirs[0]
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the controller never applied the settings")


def held(study_dir: Path) -> tuple[float | None, list[int] | None]:
    try:
        data = json.loads((study_dir / "simulated-gpus" / "settings.json").read_text())
    except (OSError, ValueError):
        return None, None
    gpu = data["devices"].get("1", {})
    return gpu.get("power_limit_w"), gpu.get("gpu_locked_mhz")


def test_settings_left_by_a_killed_controller_are_restored_at_the_next_start(tmp_path,
                                                                            tiny_model):
    proc, study_dir = start_until_applied(tmp_path, tiny_model)
    os.kill(proc.pid, signal.SIGKILL)  # the controller only: no chance to restore anything
    proc.wait(timeout=30)
    # the GPU still holds the run's settings, and the manifest's journal says what to restore
    assert held(study_dir) == (250.0, [1410, 1410])
    manifest = read_model(study_dir / "manifest.json", Manifest)
    (entry,) = manifest.gpu_journal
    assert entry.gpus[0].index == 1 and entry.gpus[0].power_limit_w == 700.0
    assert entry.gpus[0].reset_sm_clocks and entry.controller_pid == proc.pid
    status = harness("study", "status", str(study_dir))
    assert (f"GPU settings of run {entry.run_id} (power_limit_w=250, sm_clock_mhz=1410) on GPUs 1 "
            "are not restored yet" in " ".join(status.stdout.split())), status.stdout

    resumed = harness("study", "resume", str(study_dir), timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    text = " ".join(resumed.stdout.split())
    assert (f"{entry.run_id}: restored the GPU settings a lost controller left "
            "(power_limit_w=250, sm_clock_mhz=1410) to what they were before: GPU 1: power "
            "limit 700 W, SM clock unlocked") in text
    assert held(study_dir) == (700.0, None)
    manifest = read_model(study_dir / "manifest.json", Manifest)
    assert manifest.gpu_journal == [] and manifest.runs[0].status == "done"


def test_ctrl_c_restores_the_settings_before_the_controller_exits(tmp_path, tiny_model):
    proc, study_dir = start_until_applied(tmp_path, tiny_model)
    os.kill(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert held(study_dir) == (700.0, None)
    manifest = read_model(study_dir / "manifest.json", Manifest)
    assert manifest.gpu_journal == [] and manifest.runs[0].status == "interrupted"
    record = manifest.runs[0].gpu_settings
    assert record is not None and record.restored and record.restored_by == "controller"
