"""TensorRT-LLM on real NVIDIA GPUs (marker gpu): engine build, cache reuse, both runtimes, TP.

Run on a GPU machine with TensorRT-LLM installed (the harness/tensorrt-llm:cuda image has it):
``pytest -m gpu tests/gpu/test_tensorrt_llm_gpu.py``.
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
    pytest.importorskip(
        "tensorrt_llm", reason="TensorRT-LLM is not installed here (use the harness/tensorrt-llm:cuda image)"
    )
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def experiment(model, **options) -> dict:
    return {
        "model": str(model), "backend": "tensorrt_llm", "device": "cuda", "precision": "fp16",
        "batch_size": 4,
        "workload": {"num_prompts": 8, "input_tokens": 32, "output_tokens": 16},
        "measurement": {"warmup_batches": 1, "baseline_s": 1, "loaded_idle_s": 1,
                        "min_window_s": 2, "gpu_min_window_s": 5, "min_counter_updates": 20},
        "tensorrt_llm": {"max_batch_size": 8, "max_seq_len": 256,
                         "kv_cache_free_gpu_memory_fraction": 0.3, **options},
    }


def test_engine_is_built_once_then_reused(tmp_path, model):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    first = run_agent(tmp_path, experiment(model), env=env)
    check_run(first, bursts=True)
    info = first.backend_info
    assert info["engine_reused"] is False and info["engine_build_s"] > 0
    assert "engine_save_error" not in info
    engine = tmp_path / "cache" / "harness" / "tensorrt_llm" / info["engine_key"]
    assert (engine / "config.json").is_file() and list(engine.glob("rank*.engine"))
    second = run_agent(tmp_path, experiment(model), env=env)
    check_run(second, bursts=True)
    assert second.backend_info["engine_reused"] is True
    assert second.backend_info["engine_key"] == info["engine_key"]
    assert second.backend_info["engine_load_s"] > 0


def test_pytorch_runtime(tmp_path, model):
    result = run_agent(tmp_path, experiment(model, runtime="pytorch"))
    check_run(result, bursts=True)
    assert result.backend_info["runtime"] == "pytorch"


def test_tensor_parallel_on_one_node(tmp_path, model):
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 2:
        pytest.skip("tensor parallelism needs two GPUs")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    # the LLM API starts its own MPI workers on one node: the agent runs as in the image
    result = run_agent(tmp_path, experiment(model, tensor_parallel_size=2), env=env)
    check_run(result, bursts=True)
    assert result.backend_info["world_size"] == 2
    assert "-tp2pp1-" in result.backend_info["engine_key"]
