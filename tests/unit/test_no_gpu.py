"""A cuda run where no NVIDIA GPU is visible is refused by the agent with reason no_gpu.

The CUDA driver library is absent on these machines, so the real probe (in a real child
process) sees no GPU; the driver's answers on a GPU host are faked with a stand-in library.
"""

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.agent import cuda
from harness.config.experiment import Experiment
from harness.errors import RunFailure
from harness.results.io import atomic_write_json
from harness.results.reasons import ExitCode, FailureReason
from harness.results.schema import RunInfo, RunSpec

REPO = Path(__file__).resolve().parents[2]


class FakeDriver:
    """Stands in for libcuda.so.1: the CUresult codes and out-parameters of three calls."""

    def __init__(self, *, version: int = 12080, init: int = 0, count: int = 1) -> None:
        self.version, self.init, self.count = version, init, count

    def cuDriverGetVersion(self, out) -> int:  # noqa: N802 - the driver API's name
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int)).contents.value = self.version
        return 0

    def cuInit(self, flags: int) -> int:  # noqa: N802
        return self.init

    def cuDeviceGetCount(self, out) -> int:  # noqa: N802
        ctypes.cast(out, ctypes.POINTER(ctypes.c_int)).contents.value = self.count
        return 0


def test_the_driver_reports_its_cuda_version_and_devices() -> None:
    found = cuda.probe(lambda _name: FakeDriver(version=13000, count=2))
    assert found == cuda.CudaDriver("13.0", 2, None) and found.usable
    assert cuda.cuda_version_text(12080) == "12.8"


def test_a_driver_without_devices_is_not_usable() -> None:
    found = cuda.probe(lambda _name: FakeDriver(init=100))
    assert not found.usable
    assert found.problem == "the CUDA driver did not initialise (CUDA_ERROR_NO_DEVICE)"
    assert cuda.probe(lambda _name: FakeDriver(count=0)).problem == "the driver sees no device"


def test_no_driver_library_here_in_a_child_process() -> None:
    found = cuda.probe_in_child()  # a real child process; this machine has no NVIDIA driver
    assert found.devices == 0 and not found.usable
    assert "libcuda.so.1" in (found.problem or "")


def test_require_gpu_refuses_cuda_runs_only() -> None:
    assert cuda.require_gpu("cpu") is None
    ok = cuda.CudaDriver("12.8", 1)
    assert cuda.require_gpu("cuda", ok) is ok
    with pytest.raises(RunFailure) as e:
        cuda.require_gpu("cuda", cuda.CudaDriver(None, 0, "the NVIDIA driver library is not here"))
    assert e.value.reason == FailureReason.NO_GPU
    assert str(e.value).startswith("no NVIDIA GPU visible: the NVIDIA driver library is not here")


@pytest.mark.parametrize("backend", ["pytorch", "vllm", "tensorrt_llm"])
def test_the_agent_refuses_a_cuda_run_with_error_json(tmp_path: Path, backend: str) -> None:
    exp = Experiment(model="/nowhere", backend=backend, device="cuda")
    spec = RunSpec(run=RunInfo(study="s", experiment_id=exp.id, cycle=1, run_id=f"{exp.id}-c1"),
                   experiment=exp, model_path="/nowhere")
    atomic_write_json(tmp_path / "config.json", spec)
    out = subprocess.run(
        [sys.executable, "-m", "harness.agent", "--config", str(tmp_path / "config.json")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert out.returncode == ExitCode.FAILED, out.stderr
    error = json.loads((tmp_path / "error.json").read_text())
    assert error["reason"] == "no_gpu"
    assert error["message"].startswith("no NVIDIA GPU visible: ")
    assert "[agent] failed (no_gpu): no NVIDIA GPU visible" in out.stderr
    assert not (tmp_path / "result.json").exists()
