"""Serving mode on a real NVIDIA GPU (marker gpu): vLLM's and TensorRT-LLM's servers under load.

Run on a GPU machine inside the engine's image (harness/vllm:cuda has vLLM; the TensorRT-LLM
image has ``trtllm-serve``): ``pytest -m gpu tests/gpu/test_serving_gpu.py``. Each test runs
the agent as the images do and checks that NVML energy was measured over a steady window.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from _agent import run_agent

from harness.models import write_tiny_model
from harness.results.schema import ExperimentResult

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def serving(model, backend: str, options: dict, **kw) -> dict:
    data = {
        "model": str(model), "backend": backend, "device": "cuda", "precision": "bf16",
        "mode": "serving",
        "workload": {"input_tokens": 64, "output_tokens": 64},
        "measurement": {"baseline_s": 5, "loaded_idle_s": 5, "min_window_s": 5,
                        "gpu_min_window_s": 10, "min_counter_updates": 50},
        "serving": {"request_rate": 20, "num_requests": 400, "warmup_requests": 8},
        "slo": {"ttft_s": 0.5, "tpot_s": 0.05},
        backend: options,
    }
    data.update(kw)
    return data


def check_served(result: ExperimentResult) -> None:
    """NVML energy over a steady window found by the rule; per-request figures consistent."""
    s = result.serving
    assert s is not None and s.requests_ok == s.requests_planned and s.window_found
    assert s.achieved_request_rate == pytest.approx(20, rel=0.02)
    e = result.energy
    assert e.energy_method == "nvml_counter", e.unavailable_reason
    assert e.energy_j and e.energy_j > 0 and e.loaded_idle_power_w and e.loaded_idle_power_w > 0
    assert "window_edges" in {t.name for t in e.uncertainty["energy_j"].terms}
    mean_out = result.experiment.workload.output_tokens
    assert e.j_per_request == pytest.approx(e.j_per_output_token * mean_out)
    assert result.latency.ttft.p90_s and result.latency.tpot.p90_s
    assert s.slo_attainment is not None


def test_vllm_serving_on_a_gpu(tmp_path, model):
    pytest.importorskip("vllm", reason="vLLM is not installed here (use the harness/vllm:cuda image)")
    result = run_agent(tmp_path, serving(model, "vllm", {"gpu_memory_utilization": 0.3,
                                                         "max_num_seqs": 16}))
    check_served(result)
    assert result.serving.mean_running_requests is not None  # vLLM's /metrics gauge
    assert result.backend_info["engine_version"] != "unknown"


def test_tensorrt_llm_serving_on_a_gpu(tmp_path, model):
    if shutil.which("trtllm-serve") is None:
        pytest.skip("trtllm-serve is not installed here (use the TensorRT-LLM image)")
    result = run_agent(tmp_path, serving(model, "tensorrt_llm", {
        "runtime": "pytorch", "max_batch_size": 16, "kv_cache_free_gpu_memory_fraction": 0.3}))
    check_served(result)
    extra = next(tmp_path.rglob("extra-llm-api-options.yaml"))
    assert json.loads(extra.read_text())["kv_cache_config"]["free_gpu_memory_fraction"] == 0.3
