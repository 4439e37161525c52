"""The PyTorch/transformers backend on a real NVIDIA GPU (marker gpu): CUDA precisions, NVML
energy with its idle baseline and prefill split, and the GPU memory peaks.

Run on a GPU machine with torch (CUDA), transformers and nvidia-ml-py installed (the
harness/pytorch:cuda image has them): ``pytest -m gpu tests/gpu/test_pytorch_gpu.py``.
"""

from __future__ import annotations

import os

import pytest
from _agent import check_run, run_agent

from harness.models import write_tiny_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here")
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.mark.parametrize(("precision", "dtype"), [("fp16", "torch.float16"), ("bf16", "torch.bfloat16")])
def test_pytorch_cuda_precisions_with_nvml_energy(tmp_path, model, precision, dtype):
    result = run_agent(tmp_path, {
        "model": str(model), "backend": "pytorch", "device": "cuda", "precision": precision,
        "batch_size": 4,
        "workload": {"num_prompts": 8, "input_tokens": 32, "output_tokens": 16},
        "measurement": {"warmup_batches": 1, "baseline_s": 2, "loaded_idle_s": 2,
                        "min_window_s": 2, "gpu_min_window_s": 5, "min_counter_updates": 20,
                        "prefill_split": True},
    })
    check_run(result)
    assert result.backend_info["dtype"] == dtype
    energy = result.energy
    assert energy.energy_method in ("nvml_counter", "nvml_power_integration")
    assert energy.idle_power_w and energy.idle_power_w > 0
    assert energy.loaded_idle_power_w and energy.loaded_idle_power_w > 0
    assert energy.dynamic_energy_j is not None
    assert energy.uncertainty["energy_j"].expanded > 0
    assert energy.uncertainty["j_per_output_token"].dominant
    # the GPU torch computes on is the GPU NVML measures (compared by UUID after the load)
    check = result.environment["device_check"]
    assert check["verdict"] == "match", check
    assert result.steady_state.verdict in ("steady", "not_steady")
    assert result.steady_state.counter_updates and result.steady_state.counter_updates >= 20
    assert energy.j_per_output_token and energy.j_per_output_token > 0
    assert result.prefill.measured and result.prefill.prefill_energy_j is not None
    assert result.compute.peak_memory_allocated_bytes and result.compute.peak_memory_allocated_bytes > 0
    assert result.compute.peak_memory_used_bytes and result.compute.peak_memory_used_bytes > 0
    sensor = result.environment["sensor"]
    assert sensor["driver_version"]
    assert all(d["uuid"].startswith("GPU-") and d["name"] for d in sensor["devices"])
