"""TensorRT-LLM: option mapping, engine cache key and cache folder (pure; no TensorRT-LLM here)."""

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends.tensorrt_llm import SPEC, engine
from harness.backends.tensorrt_llm import mapping as trt
from harness.config.experiment import Decoding, Experiment
from harness.errors import EnvironmentProblem


def exp(**kw) -> Experiment:
    data = {"model": "m", "device": "cuda", "precision": "bf16"}
    data.update(kw)
    return Experiment.model_validate(data).resolved()


def test_the_module_imports_without_tensorrt_llm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # absent, even where installed
    importlib.reload(engine)
    backend = engine.TensorrtLlmEngine(exp(backend="tensorrt_llm"))
    with pytest.raises(EnvironmentProblem, match="TensorRT-LLM is not installed"):
        backend.load("/model")


def test_tensorrt_defaults_map_to_llm_args():
    assert trt.llm_args(exp(backend="tensorrt_llm"), "/m") == {
        "model": "/m",
        "tokenizer": "/m",
        "dtype": "bfloat16",
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "kv_cache_config": {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": False},
        "build_config": {"max_batch_size": 64},
    }


def test_tensorrt_build_kv_and_quant_configs():
    e = exp(
        backend="tensorrt_llm", precision="fp8",
        tensorrt_llm={
            "max_batch_size": 16, "max_num_tokens": 4096, "max_seq_len": 2048,
            "kv_cache_free_gpu_memory_fraction": 0.8, "enable_block_reuse": True,
            "tensor_parallel_size": 2, "pipeline_parallel_size": 2, "kv_cache_dtype": "fp8",
            "prequantized": True,  # FP8 and an FP8 KV cache are calibrated otherwise
        },
    )
    args = trt.llm_args(e, "/m")
    assert args["dtype"] == "auto"
    assert args["build_config"] == {"max_batch_size": 16, "max_num_tokens": 4096, "max_seq_len": 2048}
    assert args["kv_cache_config"] == {"free_gpu_memory_fraction": 0.8, "enable_block_reuse": True}
    assert args["quant_config"] == {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8"}
    assert (args["tensor_parallel_size"], args["pipeline_parallel_size"]) == (2, 2)
    assert trt.world_size(e.options) == 4


@pytest.mark.parametrize(
    ("precision", "quantization", "algo", "prequantized"),
    [
        ("int8", None, "W8A16", False),
        ("int4", None, "W4A16", False),
        ("int4", "int4_awq", "W4A16_AWQ", True),  # calibrated unless the checkpoint is quantized
        ("fp8", None, "FP8", True),
    ],
)
def test_tensorrt_quantized_precisions(precision, quantization, algo, prequantized):
    e = exp(backend="tensorrt_llm", precision=precision,
            tensorrt_llm={"quantization": quantization, "prequantized": prequantized})
    assert trt.quant_config(e) == {"quant_algo": algo}


def test_tensorrt_pytorch_runtime_takes_limits_directly():
    e = exp(backend="tensorrt_llm", precision="fp16",
            tensorrt_llm={"runtime": "pytorch", "max_batch_size": 8, "max_seq_len": 512,
                          "kv_cache_dtype": "fp8"})
    args = trt.llm_args(e, "/m")
    assert "build_config" not in args and "quant_config" not in args
    assert args["max_batch_size"] == 8 and args["max_seq_len"] == 512
    assert args["kv_cache_config"]["dtype"] == "fp8"


def test_tensorrt_sampling_is_exact_length_and_greedy():
    assert trt.sampling_args(Decoding(), 16) == {
        "max_tokens": 16, "min_tokens": 16, "ignore_eos": True, "detokenize": False, "n": 1,
        "top_k": 1,
    }
    sampled = trt.sampling_args(Decoding(temperature=1.0, top_p=0.5, top_k=10), 2)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (1.0, 0.5, 10)


def test_instantiate_builds_the_engines_config_objects():
    made = []

    def kind(name):
        def make(**kwargs):
            made.append(name)
            return (name, kwargs)
        return make

    llmapi = SimpleNamespace(
        BuildConfig=kind("BuildConfig"), KvCacheConfig=kind("KvCacheConfig"),
        QuantConfig=kind("QuantConfig"), QuantAlgo=SimpleNamespace(FP8="QuantAlgo.FP8"),
    )
    args = trt.llm_args(exp(backend="tensorrt_llm", precision="fp8",
                            tensorrt_llm={"prequantized": True}), "/m")
    out = trt.instantiate(args, llmapi)
    assert out["build_config"] == ("BuildConfig", {"max_batch_size": 64})
    assert out["quant_config"] == ("QuantConfig", {"quant_algo": "QuantAlgo.FP8"})
    assert out["kv_cache_config"][0] == "KvCacheConfig"
    assert args["build_config"] == {"max_batch_size": 64}  # the plain args are left alone
    assert sorted(made) == ["BuildConfig", "KvCacheConfig", "QuantConfig"]


def key(e: Experiment, **kw) -> str:
    parts = {"model_name": "org/Llama-3.2-1B", "model_fingerprint": "abc", "version": "1.0.0",
             "gpu": "NVIDIA H200"}
    parts.update(kw)
    return trt.engine_key(e, **parts)


def test_engine_key_names_what_the_engine_depends_on():
    base = exp(backend="tensorrt_llm")
    k = key(base)
    assert k.startswith("org-Llama-3.2-1B-bf16-tp1pp1-b64-sauto-trtllm1.0.0-")
    assert key(base) == k  # stable
    # the run's workload, measurement and batch size do not change the engine
    assert key(exp(backend="tensorrt_llm", batch_size=32, workload={"num_prompts": 4},
                   measurement={"min_window_s": 1})) == k
    assert key(exp(backend="tensorrt_llm",
                   tensorrt_llm={"kv_cache_free_gpu_memory_fraction": 0.5})) == k
    changed = [
        key(exp(backend="tensorrt_llm", precision="fp16")),
        key(exp(backend="tensorrt_llm", precision="fp8", tensorrt_llm={"prequantized": True})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"tensor_parallel_size": 2})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"pipeline_parallel_size": 2})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_batch_size": 8})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_seq_len": 4096})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_num_tokens": 8192})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"kv_cache_dtype": "fp8", "prequantized": True})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"enable_block_reuse": True})),
        key(base, model_fingerprint="def"),
        key(base, model_name="org/other"),
        key(base, version="1.2.1"),
        key(base, gpu="NVIDIA A100"),
    ]
    assert k not in changed and len(set(changed)) == len(changed)


def test_model_fingerprint_and_saved_engine_detection(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    first = trt.model_fingerprint(model)
    (model / "config.json").write_text('{"a": 2}')
    assert trt.model_fingerprint(model) != first
    engine = tmp_path / "engine"
    engine.mkdir()
    assert not trt.has_engine(engine)
    (engine / "config.json").write_text("{}")
    (engine / "rank0.engine").write_bytes(b"x")
    assert trt.has_engine(engine)


def test_engine_cache_falls_back_to_the_users_cache(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert SPEC.cache_mount == "/engine-cache"
    assert not Path("/engine-cache").exists()
    assert trt.engine_cache_dir() == tmp_path / "harness" / "tensorrt_llm"


def test_the_image_runs_the_agent_itself_with_the_vendor_entrypoint_first():
    # one node: the LLM API starts its own MPI workers; no launcher wraps the agent
    cuda = SPEC.recipe.variants["cuda"]
    assert cuda.vendor_entrypoint == "/opt/nvidia/nvidia_entrypoint.sh"
    assert cuda.build_args()["VENDOR_ENTRYPOINT"] == cuda.vendor_entrypoint
    assert "/engine-cache" in cuda.dirs
