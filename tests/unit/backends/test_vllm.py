"""vLLM: options mapped into the engine's arguments (pure; no vLLM needed)."""

import pytest

from harness.backends.vllm import engine as vl
from harness.config.experiment import Decoding, Experiment

GIB = 1024**3


def exp(**kw) -> Experiment:
    data = {"model": "m", "device": "cuda", "precision": "bf16"}
    data.update(kw)
    return Experiment.model_validate(data).resolved()


def test_vllm_defaults_map_to_llm_kwargs():
    kwargs = vl.llm_kwargs(exp(backend="vllm", workload={"seed": 7}), "/model")
    assert kwargs == {
        "model": "/model",
        "dtype": "bfloat16",
        "quantization": None,
        "gpu_memory_utilization": 0.9,
        "max_num_seqs": 256,
        "enforce_eager": False,
        "kv_cache_dtype": "auto",
        "enable_prefix_caching": False,
        "tensor_parallel_size": 1,
        "seed": 7,
        "disable_log_stats": True,
    }


def test_vllm_every_option_reaches_the_engine():
    e = exp(
        backend="vllm", device="cpu", precision="fp32",
        vllm={
            "gpu_memory_utilization": 0.5, "max_num_seqs": 4, "max_num_batched_tokens": 512,
            "max_model_len": 1024, "enforce_eager": True, "kv_cache_dtype": "fp8",
            "enable_prefix_caching": True, "enable_chunked_prefill": False,
            "tensor_parallel_size": 2, "kv_cache_space_gib": 1.5,
        },
    )
    kwargs = vl.llm_kwargs(e, "/model")
    assert kwargs["dtype"] == "float32"
    assert kwargs["kv_cache_memory_bytes"] == int(1.5 * GIB)
    for key, value in {
        "gpu_memory_utilization": 0.5, "max_num_seqs": 4, "max_num_batched_tokens": 512,
        "max_model_len": 1024, "enforce_eager": True, "kv_cache_dtype": "fp8",
        "enable_prefix_caching": True, "enable_chunked_prefill": False,
        "tensor_parallel_size": 2,
    }.items():
        assert kwargs[key] == value, key


@pytest.mark.parametrize(
    ("precision", "options", "dtype", "quantization"),
    [
        ("fp16", {}, "float16", None),
        # online FP8 from a 16-bit checkpoint: vLLM 0.32.0 calls it fp8_per_tensor
        ("fp8", {}, "auto", "fp8_per_tensor"),
        ("fp8", {"dtype": "bfloat16"}, "bfloat16", "fp8_per_tensor"),
        ("fp8", {"quantization": "modelopt"}, "auto", "modelopt"),
        ("int4", {"quantization": "awq"}, "auto", "awq"),
        ("int8", {"quantization": "gptq", "dtype": "float16"}, "float16", "gptq"),
    ],
)
def test_vllm_precision_to_dtype_and_quantization(precision, options, dtype, quantization):
    kwargs = vl.llm_kwargs(exp(backend="vllm", precision=precision, vllm=options), "/m")
    assert (kwargs["dtype"], kwargs["quantization"]) == (dtype, quantization)


def test_vllm_sampling_is_exact_length_greedy_by_default():
    assert vl.sampling_kwargs(Decoding(), 32) == {
        "max_tokens": 32, "min_tokens": 32, "ignore_eos": True, "detokenize": False, "n": 1,
        "temperature": 0.0,
    }


def test_vllm_sampling_passes_sampling_parameters():
    kwargs = vl.sampling_kwargs(Decoding(temperature=0.7, top_p=0.9, top_k=40), 1)
    assert kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9 and kwargs["top_k"] == 40
    assert kwargs["max_tokens"] == kwargs["min_tokens"] == 1 and kwargs["ignore_eos"] is True
    assert "top_k" not in vl.sampling_kwargs(Decoding(temperature=0.7), 1)


def test_vllm_backend_maps_engine_request_ids_back():
    ours = {"b0-r0": [], "b0-r1": []}
    assert vl.VllmEngine._our_id("b0-r1", ours) == "b0-r1"
    assert vl.VllmEngine._our_id("b0-r0-3f2a", ours) == "b0-r0"
