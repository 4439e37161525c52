"""Engine calls checked against the pinned engines' own source (vLLM 0.32.0, TensorRT-LLM 1.0).

docs/backends.md cites the source behind each rule; tests/integration/test_vllm_docker.py runs
the vLLM arguments through vLLM 0.32.0 itself.
"""

import json
import tomllib
from pathlib import Path

import pytest

from harness.backends import registry, weights
from harness.backends.engine import create_engine
from harness.backends.tensorrt_llm import mapping as trt
from harness.backends.vllm import engine as vl
from harness.backends.vllm.options import quantization_method
from harness.config.experiment import Experiment
from harness.config.load import plan_study
from harness.controller.preflight import check_experiments
from harness.errors import RunFailure, UserInputError
from harness.results.reasons import FailureReason

REPO = Path(__file__).resolve().parents[3]
DENSE = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64}
MOE = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": 8}
FP8_CHECKPOINT = {**DENSE, "quantization_config": {"quant_method": "fp8"}}


def exp(backend: str, **kw) -> Experiment:
    return Experiment.model_validate({"model": "m", "device": "cuda", "backend": backend, **kw})


def model_dir(tmp_path: Path, config: dict, name: str = "model") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def refused(tmp_path: Path, experiment: str) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(f"name: x\nexperiment: {experiment}\n")
    with pytest.raises(UserInputError) as e:
        plan_study(path)
    return str(e.value)


# --- vLLM 0.32.0 --------------------------------------------------------------------------


def test_fbgemm_fp8_is_refused_as_vllm_refuses_it(tmp_path) -> None:
    why = refused(tmp_path, "{model: m, backend: vllm, precision: fp8, "
                            "vllm: {quantization: fbgemm_fp8}}")
    assert ("vllm.quantization 'fbgemm_fp8' is deprecated in vLLM 0.32.0, which refuses it "
            "without --allow-deprecated-quantization; use fp8_per_tensor") in why


@pytest.mark.parametrize(
    ("given", "checkpoint", "method"),
    [
        (None, DENSE, "fp8_per_tensor"),  # online FP8 of a 16-bit checkpoint
        ("fp8", DENSE, "fp8_per_tensor"),  # vLLM rewrites it so; the result says so too
        ("fp8_per_block", DENSE, "fp8_per_block"),
        (None, FP8_CHECKPOINT, None),  # vLLM reads the checkpoint's own method
        ("fp8", FP8_CHECKPOINT, "fp8"),
        ("modelopt", FP8_CHECKPOINT, "modelopt"),
    ],
)
def test_fp8_names_the_method_vllm_really_uses(given, checkpoint, method) -> None:
    e = exp("vllm", precision="fp8", vllm={"quantization": given})
    assert quantization_method(e, checkpoint) == method
    assert vl.llm_kwargs(e, "/m", checkpoint)["quantization"] == method


def test_experts_int8_is_for_mixture_of_experts_models_only(tmp_path) -> None:
    e = exp("vllm", precision="int8", vllm={"quantization": "experts_int8"})
    dense, moe = model_dir(tmp_path, DENSE, "dense"), model_dir(tmp_path, MOE, "moe")
    (why,) = e.spec.problems_with_model(e, dense)
    assert why.startswith("vllm.quantization 'experts_int8' quantizes only the experts")
    assert "it would run in 16 bit while labelled int8" in why
    assert e.spec.problems_with_model(e, moe) == []
    # the agent stops before the engine loads (no vLLM needed to refuse)
    with pytest.raises(RunFailure) as err:
        create_engine(e).refuse_unfit_model(dense)
    assert err.value.reason == FailureReason.INPUT_INVALID


def test_online_fp8_on_a_quantized_checkpoint_is_refused(tmp_path) -> None:
    e = exp("vllm", precision="fp8", vllm={"quantization": "fp8_per_tensor"})
    (why,) = e.spec.problems_with_model(e, model_dir(tmp_path, FP8_CHECKPOINT))
    assert "is already quantized (fp8); vLLM refuses the mismatch" in why


@pytest.mark.parametrize(
    ("config", "experts"),
    [
        (DENSE, 0),
        (MOE, 8),
        ({"num_experts": 16}, 16),  # Qwen-MoE, Jamba
        ({"n_routed_experts": 64}, 64),  # DeepSeek
        ({"text_config": {"num_local_experts": 4}}, 4),  # a multimodal model's language part
        ({"block_configs": [{"block_type": "attention"},
                            {"block_type": "moe", "n_routed_experts": 32}]}, 32),
    ],
)
def test_expert_count_from_config_json(config, experts) -> None:
    assert weights.num_experts(config) == experts


def test_preflight_names_a_local_model_that_rules_an_experiment_out(tmp_path) -> None:
    folder = model_dir(tmp_path, DENSE)
    e = Experiment.model_validate({"model": str(folder), "backend": "vllm", "device": "cuda",
                                   "precision": "int8", "vllm": {"quantization": "experts_int8"}})
    runtime = type("Local", (), {"name": "local"})()
    found = check_experiments([e], runtime, origin="s.yaml", images={}, hf_cache=None,
                              model_base=None, dataset_base=tmp_path)
    (fit,) = [err for err in found.errors if err.startswith(f"s.yaml: experiment {e.id}:")]
    assert fit.startswith(f"s.yaml: experiment {e.id}: vllm.quantization 'experts_int8'")


# --- TensorRT-LLM 1.0 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "experiment",
    [
        "{model: m, backend: tensorrt_llm, precision: fp8}",
        "{model: m, backend: tensorrt_llm, precision: int4, "
        "tensorrt_llm: {quantization: int4_awq}}",
        "{model: m, backend: tensorrt_llm, precision: bf16, tensorrt_llm: {kv_cache_dtype: fp8}}",
    ],
)
def test_calibrating_schemes_are_refused_at_plan_time(tmp_path, experiment) -> None:
    why = refused(tmp_path, experiment)
    assert "needs calibration: TensorRT-LLM calibrates it on a dataset that defaults to " \
           "cnn_dailymail from the Hugging Face Hub" in why
    assert "set tensorrt_llm.prequantized: true" in why


def test_weight_only_and_prequantized_schemes_plan() -> None:
    for precision, options in (("int8", {}), ("int4", {}),
                               ("fp8", {"prequantized": True}),
                               ("int4", {"quantization": "int4_awq", "prequantized": True}),
                               ("bf16", {"kv_cache_dtype": "fp8", "prequantized": True})):
        e = exp("tensorrt_llm", precision=precision, tensorrt_llm=options)
        assert e.spec.problems(e, e.options) == []
    with pytest.raises(ValueError, match="prequantized is set, but precision 'bf16' quantizes"):
        exp("tensorrt_llm", precision="bf16", tensorrt_llm={"prequantized": True})


def test_prequantized_needs_modelopts_config_that_matches(tmp_path) -> None:
    e = exp("tensorrt_llm", precision="fp8", tensorrt_llm={"prequantized": True})
    folder = model_dir(tmp_path, DENSE)
    (missing,) = e.spec.problems_with_model(e, folder)
    assert "has no readable hf_quant_config.json: it is not a quantized checkpoint" in missing
    (folder / "hf_quant_config.json").write_text(json.dumps(
        {"quantization": {"quant_algo": "W4A16_AWQ", "kv_cache_quant_algo": None}}))
    (mismatch,) = e.spec.problems_with_model(e, folder)
    assert "is quantized as W4A16_AWQ" in mismatch and "asks for FP8" in mismatch
    (folder / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "FP8"}}))
    assert e.spec.problems_with_model(e, folder) == []
    assert trt.llm_args(e, str(folder))["quant_config"] == {"quant_algo": "FP8"}


def write_quant_config(folder: Path, **block) -> None:
    (folder / "hf_quant_config.json").write_text(json.dumps({"quantization": block}))


def test_prequantized_16_bit_run_refuses_a_checkpoint_with_quantized_weights(tmp_path) -> None:
    # TensorRT-LLM 1.0 adopts the checkpoint's quant_algo when the QuantConfig names none
    e = exp("tensorrt_llm", precision="bf16",
            tensorrt_llm={"kv_cache_dtype": "fp8", "prequantized": True})
    folder = model_dir(tmp_path, DENSE)
    write_quant_config(folder, quant_algo="FP8", kv_cache_quant_algo="FP8")
    (why,) = e.spec.problems_with_model(e, folder)
    assert "hf_quant_config.json quantizes the weights as FP8, but precision 'bf16'" in why
    assert "labelled bf16 while running FP8" in why
    write_quant_config(folder, quant_algo=None, kv_cache_quant_algo="FP8")
    (why,) = e.spec.problems_with_model(e, folder)
    assert "has no quant_algo" in why and "Pre-quantized checkpoint must have quant_algo" in why
    write_quant_config(folder, quant_algo="NO_QUANT", kv_cache_quant_algo="FP8")
    assert e.spec.problems_with_model(e, folder) == []
    (folder / "hf_quant_config.json").unlink()
    (missing,) = e.spec.problems_with_model(e, folder)
    assert "has no readable hf_quant_config.json" in missing


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_prequantized_fp8_kv_cache_needs_the_checkpoints_fp8_kv_algorithm(tmp_path, precision) -> None:
    e = exp("tensorrt_llm", precision=precision,
            tensorrt_llm={"kv_cache_dtype": "fp8", "prequantized": True})
    folder = model_dir(tmp_path, DENSE)
    weights = "NO_QUANT" if precision == "bf16" else "FP8"
    write_quant_config(folder, quant_algo=weights)
    (why,) = e.spec.problems_with_model(e, folder)
    assert "kv_cache_dtype is 'fp8', but the checkpoint's" in why
    assert "has no kv_cache_quant_algo: its KV-cache scales were never calibrated" in why
    write_quant_config(folder, quant_algo=weights, kv_cache_quant_algo="INT8")
    (why,) = e.spec.problems_with_model(e, folder)
    assert 'has kv_cache_quant_algo INT8, expected "FP8"' in why
    write_quant_config(folder, quant_algo=weights, kv_cache_quant_algo="FP8")
    assert e.spec.problems_with_model(e, folder) == []


def test_prequantized_leaves_existing_ids_alone() -> None:
    plain = exp("tensorrt_llm", precision="int8")
    assert "prequantized" not in plain.canonical_json()
    marked = exp("tensorrt_llm", precision="int8", tensorrt_llm={"prequantized": False})
    assert marked.id == plain.id


def test_tensor_parallel_runs_in_one_process_tree() -> None:
    """One node: the LLM API spawns its own MPI workers (MpiPoolSession); no launcher."""
    e = exp("tensorrt_llm", tensorrt_llm={"tensor_parallel_size": 2})
    assert trt.llm_args(e, "/m")["tensor_parallel_size"] == 2
    source = (REPO / "harness" / "backends" / "tensorrt_llm" / "engine.py").read_text()
    assert "trtllm-llmapi-launch" not in source and "mpirun" not in source


# --- PyTorch / transformers ---------------------------------------------------------------


def test_transformers_pin_has_from_pretrained_dtype() -> None:
    """``from_pretrained(dtype=...)`` (the engine's call) is transformers >= 4.56."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (req,) = [Requirement(r) for r in project["optional-dependencies"]["pytorch"]
              if r.startswith("transformers")]
    assert not req.specifier.contains(Version("4.55.9")) and req.specifier.contains("4.56.0")
    source = (REPO / "harness" / "backends" / "pytorch" / "engine.py").read_text()
    assert "from_pretrained(\n                model_dir, dtype=dtype" in source
    assert "torch_dtype" not in source


def test_every_backend_describes_its_build() -> None:
    for spec in registry.specs():
        assert "build_info" in registry.engine_class(spec).__dict__, spec.name
