"""vLLM on a real NVIDIA GPU (marker gpu): the agent end to end, bf16 and online FP8.

Run on a GPU machine with vLLM installed (the harness/vllm:cuda image has it):
``pytest -m gpu tests/gpu/test_vllm_gpu.py``.
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
    pytest.importorskip("vllm", reason="vLLM is not installed here (use the harness/vllm:cuda image)")
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def experiment(model, **kw) -> dict:
    data = {
        "model": str(model), "backend": "vllm", "device": "cuda", "precision": "bf16",
        "batch_size": 4,
        "workload": {"num_prompts": 8, "input_tokens": 32, "output_tokens": 16},
        "measurement": {"warmup_batches": 1, "baseline_s": 1, "loaded_idle_s": 1,
                        "min_window_s": 2, "gpu_min_window_s": 5, "min_counter_updates": 20},
        "vllm": {"gpu_memory_utilization": 0.3, "max_num_seqs": 8},
    }
    data.update(kw)
    return data


def test_vllm_bf16_end_to_end(tmp_path, model):
    result = run_agent(tmp_path, experiment(model))
    check_run(result)
    info = result.backend_info
    assert info["llm_kwargs"]["dtype"] == "bfloat16" and info["llm_kwargs"]["quantization"] is None
    assert 0 < info["engine_start_s"] <= result.timings.load_s
    assert result.prefill.measured and result.prefill.prefill_energy_j is not None


def test_vllm_online_fp8(tmp_path, model):
    torch = pytest.importorskip("torch")
    if torch.cuda.get_device_capability(0) < (8, 9):
        pytest.skip("FP8 needs compute capability 8.9 or newer (Ada, Hopper)")
    result = run_agent(tmp_path, experiment(model, precision="fp8"))
    check_run(result)
    # vLLM 0.32.0 quantizes a 16-bit checkpoint online as fp8_per_tensor (it rewrites "fp8")
    assert result.backend_info["llm_kwargs"]["quantization"] == "fp8_per_tensor"
    assert result.backend_info["quantization"] == "fp8_per_tensor"
