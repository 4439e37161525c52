"""Backend specs: quantization tables, plan-time refusals, option blocks, the engine cache mount."""

import typing
from pathlib import Path
from unittest import mock

import docker
import pytest

from harness.backends import registry, weights
from harness.backends.tensorrt_llm import mapping as trt_mapping
from harness.backends.tensorrt_llm.options import TensorrtLlmOptions, TensorrtLlmQuantization
from harness.backends.vllm.options import VllmOptions, VllmQuantization
from harness.config.load import load_experiment, plan_study
from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.docker import DockerRuntime, cache_mount
from harness.errors import UserInputError

# --- the backend table --------------------------------------------------------------------


def test_quantization_tables_match_the_options():
    for name, literal in (("vllm", VllmQuantization), ("tensorrt_llm", TensorrtLlmQuantization)):
        spec = registry.get(name)
        schemes = {s for values in spec.quantization.values() for s in values}
        # every scheme the options accept either gives a precision or is refused with a reason
        assert schemes | set(spec.refused_quantization) == set(typing.get_args(literal)), name
        assert not schemes & set(spec.refused_quantization), name
        assert set(spec.quantization) <= {p for ps in spec.precisions.values() for p in ps}
        for precision, default in spec.default_quantization.items():
            assert default in spec.quantization[precision], (name, precision)
    assert set(trt_mapping.QUANT_ALGOS) == set(typing.get_args(TensorrtLlmQuantization))
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
         "(for 'fp8' use one of: fp8_per_tensor, fp8_per_channel, fp8_per_block, fp8, modelopt, "
         "compressed-tensors)"),
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
         "experiment.vllm.quantization: Input should be 'fp8_per_tensor', 'fp8_per_channel'"),
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
    _, plan = plan_study(Path(__file__).resolve().parents[3] / "studies" / "backends-cpu.yaml")
    assert {p.experiment.backend for p in plan.experiments} == {"pytorch", "vllm"}
    assert len(plan.runs) >= 4 and plan.warnings == []
    assert all(p.experiment.block("vllm") is None for p in plan.experiments
               if p.experiment.backend == "pytorch")


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
