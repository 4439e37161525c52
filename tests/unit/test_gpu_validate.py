"""scripts/gpu_validate.py's parts that need no GPU: carried wheels, NVML call timing, and a
comparison that skips results without window edges (the dry run end to end is in
tests/integration/test_gpu_validate_script.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _synthetic import make_study

from harness.results.io import atomic_write_json, read_model
from harness.results.schema import ExperimentResult
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.nvml import SimulatedNvml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import gpu_validate  # noqa: E402


def test_results_without_window_edges_are_skipped_and_named(tmp_path: Path) -> None:
    study = make_study(tmp_path, sweep={"batch_size": [1, 32]}, j_factors={}, cycles=1)
    first, second = sorted(study.glob("runs/*/result.json"))
    result = read_model(first, ExperimentResult)
    result.energy.phase_edges_s["window"] = (10.0, 20.0)
    atomic_write_json(first, result)
    seen = []

    def truth(run_dir: Path, res: ExperimentResult, t0: float, t1: float) -> float:
        seen.append((run_dir.name, t0, t1))
        return 80.0

    rows, skipped = gpu_validate.compare(study, None, truth)
    assert seen == [(first.parent.name, 10.0, 20.0)]
    assert [r["run"] for r in rows] == [result.run.run_id]
    (why,) = skipped
    assert why.startswith(f"{second.parent.name}: no window edges in {second}")
    assert gpu_validate.report(rows, skipped, 0.05, tmp_path) == 1  # not a full validation
    data = json.loads((tmp_path / "validate.json").read_text())
    assert data["skipped"] == skipped and data["nvml_power_call_ms"] == 0.05


def test_power_call_time_is_the_mean_of_the_calls() -> None:
    nvml = SimulatedNvml(SimulatedGpus(call_latency_ms=2.0))
    mean_ms = gpu_validate.power_call_ms(nvml, calls=20)
    assert 2.0 <= mean_ms < 20.0


def fake_pydantic_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel that satisfies the harness's pydantic pin."""
    folder.mkdir()
    wheel = folder / "pydantic-2.99.0-py3-none-any.whl"
    info = "pydantic-2.99.0.dist-info"
    files = {
        "pydantic/__init__.py": "VERSION = '2.99.0'\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: pydantic\nVersion: 2.99.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in {**files, f"{info}/RECORD": record}.items():
            zf.writestr(name, text)
    return folder


def test_wheels_are_installed_offline_and_reach_child_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    target = gpu_validate.use_wheels(fake_pydantic_wheel(tmp_path / "wheels"))
    try:
        assert (target / "pydantic" / "__init__.py").is_file()
        assert sys.path[0] == str(target)
        assert os.environ["PYTHONPATH"] == os.pathsep.join([str(target), "/elsewhere"])
        child = subprocess.run([sys.executable, "-c", "import pydantic; print(pydantic.VERSION)"],
                               capture_output=True, text=True, check=True, env=dict(os.environ))
        assert child.stdout.strip() == "2.99.0"
    finally:
        shutil.rmtree(target)


def test_wheels_that_do_not_hold_pydantic_are_a_clear_error(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        gpu_validate.use_wheels(tmp_path / "empty")
    assert f"--wheels {tmp_path / 'empty'}: pip could not install 'pydantic>=2.6,<3'" in str(e.value)
    with pytest.raises(SystemExit, match="no such folder of wheels"):
        gpu_validate.use_wheels(tmp_path / "missing")
