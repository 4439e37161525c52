"""Options of the TensorRT-LLM backend (``experiment.tensorrt_llm``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.backends.spec import ID_OMIT_DEFAULT, BackendOptions, length_problem

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

#: TensorRT-LLM's BuildConfig default of max_num_tokens (tokens per in-flight iteration)
DEFAULT_MAX_NUM_TOKENS = 8192
TensorrtLlmQuantization = Literal["fp8", "int8_weight_only", "int4_weight_only", "int4_awq"]
#: quantized precision -> the scheme used when ``quantization`` is not given
DEFAULT_QUANTIZATION = {"fp8": "fp8", "int8": "int8_weight_only", "int4": "int4_weight_only"}
#: schemes TensorRT-LLM calibrates on a dataset when it quantizes a 16-bit checkpoint
#: (QuantConfig._requires_calibration: all but the weight-only ones; an FP8 KV cache too)
CALIBRATED = ("fp8", "int4_awq")
CALIBRATION_HELP = (
    "TensorRT-LLM calibrates it on a dataset that defaults to cnn_dailymail from the Hugging "
    "Face Hub (CalibConfig.calib_dataset), which a run cannot download: runs have no network. "
    "Quantize the checkpoint beforehand (NVIDIA ModelOpt writes hf_quant_config.json next to "
    "the weights) and set tensorrt_llm.prequantized: true, or use a weight-only scheme "
    "(int8_weight_only, int4_weight_only), which needs no calibration"
)


class TensorrtLlmOptions(BackendOptions):
    """Options of the TensorRT-LLM LLM API (``tensorrt_llm.LLM``)."""

    runtime: Literal["tensorrt", "pytorch"] = Field(
        "tensorrt", description="tensorrt: a built (and cached) TensorRT engine; "
        "pytorch: TensorRT-LLM's PyTorch runtime, nothing is built",
    )
    max_batch_size: int = Field(64, ge=1)
    max_num_tokens: int | None = Field(None, ge=1)
    max_seq_len: int | None = Field(None, ge=1)
    kv_cache_free_gpu_memory_fraction: float = Field(0.9, gt=0, le=1)
    enable_block_reuse: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    quantization: TensorrtLlmQuantization | None = Field(
        None, description="quantization algorithm; a quantized precision picks its default"
    )
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"
    prequantized: bool = Field(
        False, json_schema_extra=ID_OMIT_DEFAULT,
        description="the checkpoint is already quantized (ModelOpt's hf_quant_config.json); "
        "nothing is calibrated, so fp8, int4_awq and an fp8 KV cache can run offline",
    )

    def calibrated(self, precision: str) -> list[str]:
        """What TensorRT-LLM would calibrate for ``precision`` with these options."""
        scheme = self.quantization or DEFAULT_QUANTIZATION.get(precision)
        found = [f"quantization {scheme!r}"] if scheme in CALIBRATED else []
        if self.kv_cache_dtype == "fp8":
            found.append("kv_cache_dtype 'fp8'")
        return found

    def problems(self, experiment: Experiment) -> list[str]:
        """A sequence limit shorter than a request; quantization that needs a hub download."""
        found = length_problem("tensorrt_llm.max_seq_len", self.max_seq_len, experiment)
        if self.runtime == "pytorch" and experiment.precision not in ("fp16", "bf16"):
            found.append(
                f"tensorrt_llm.runtime 'pytorch' does not quantize a checkpoint, so it cannot "
                f"give precision {experiment.precision!r}; use runtime 'tensorrt'"
            )
        calibrated = self.calibrated(experiment.precision)
        if self.runtime == "tensorrt" and calibrated and not self.prequantized:
            found.append(f"tensorrt_llm {' and '.join(calibrated)} at precision "
                         f"{experiment.precision!r} needs calibration: {CALIBRATION_HELP}")
        if self.prequantized and experiment.precision in ("fp16", "bf16") and not calibrated:
            found.append(f"tensorrt_llm.prequantized is set, but precision "
                         f"{experiment.precision!r} quantizes nothing; remove it")
        return found

    def gpus_per_run(self) -> int:
        """GPUs one engine spans: tensor x pipeline parallel size."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def quantization_scheme_given(self) -> str | None:
        """The quantization algorithm named, if any."""
        return self.quantization

    def max_running_requests(self) -> int | None:
        """In-flight batching runs at most max_batch_size requests per iteration."""
        return self.max_batch_size

    def prefill_interleaving(
        self, experiment: Experiment, batch_tokens: int, batch_size: int, token_budget: int | None
    ) -> str | None:
        """Why in-flight batching would run part of a batch's context beside generation.

        One iteration takes at most max_batch_size requests and max_num_tokens tokens
        (BuildConfig's default 8192); the rest of a batch's context waits for later ones.
        """
        if batch_size > self.max_batch_size:
            return (f"a batch of {batch_size} requests exceeds tensorrt_llm.max_batch_size "
                    f"{self.max_batch_size}: later requests' context runs while others generate")
        budget = token_budget or self.max_num_tokens or DEFAULT_MAX_NUM_TOKENS
        if batch_tokens > budget:
            return (f"a batch's {batch_tokens} prompt tokens exceed the {budget} tokens of one "
                    "in-flight batching iteration (max_num_tokens): the rest of the context "
                    "runs in iterations that also generate")
        return None


#: the options' quantization -> TensorRT-LLM's QuantAlgo member name
QUANT_ALGOS = {
    "fp8": "FP8",
    "int8_weight_only": "W8A16",
    "int4_weight_only": "W4A16",
    "int4_awq": "W4A16_AWQ",
}
#: what NVIDIA ModelOpt writes next to a quantized checkpoint; TensorRT-LLM reads it
HF_QUANT_CONFIG = "hf_quant_config.json"
#: the QuantAlgo member that quantizes no weight (QuantMode.from_quant_algo maps it to no mode)
NO_QUANT = "NO_QUANT"

# How TensorRT-LLM 1.0 reads hf_quant_config.json (ModelLoader._update_from_hf_quant_config in
# tensorrt_llm/llmapi/llm_utils.py, read at NVIDIA/TensorRT-LLM commit 7b437aaa, the 1.0-era
# TrtLlmArgs loader; main at 0066b2a5 keeps the same rules; the v1.0.0 tag itself could not be
# read here): a missing or null quant_algo raises "Pre-quantized checkpoint must have
# quant_algo"; a quant_algo the QuantConfig does not name is adopted ("Setting quant_algo=...
# from HF quant config"), so a 16-bit run would quantize its weights; a kv_cache_quant_algo
# that differs from the one asked for raises; none at all is accepted for an FP8 KV cache, but
# then nothing calibrated its scales (prequantized skips calibration).


def checkpoint_quantization(model_dir: Path) -> dict[str, Any] | None:
    """The ``quantization`` block of a ModelOpt checkpoint's hf_quant_config.json, if any."""
    try:
        data = json.loads((Path(model_dir) / HF_QUANT_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    block = data.get("quantization") if isinstance(data, dict) else None
    return block if isinstance(block, dict) else None


def _weights_problem(experiment: Experiment, scheme: str | None, have: Any, where: str) -> str | None:
    """Why the checkpoint's quant_algo does not give the experiment's precision."""
    if have is None:
        return (f"{where} has no quant_algo (quantization.quant_algo): TensorRT-LLM 1.0 refuses "
                "a pre-quantized checkpoint without one (\"Pre-quantized checkpoint must have "
                "quant_algo\")")
    if scheme is None:
        if have == NO_QUANT:
            return None
        return (f"{where} quantizes the weights as {have}, but precision "
                f"{experiment.precision!r} asks for unquantized weights: TensorRT-LLM would adopt "
                f"{have} and the run would be labelled {experiment.precision} while running "
                f"{have}; use the checkpoint's precision, or one whose quant_algo is {NO_QUANT}")
    want = QUANT_ALGOS[scheme]
    if have != want:
        return (f"{where} is quantized as {have}, but precision {experiment.precision!r} with "
                f"quantization {scheme!r} asks for {want}; TensorRT-LLM refuses the mismatch")
    return None


def _kv_cache_problem(have: Any, where: str) -> str | None:
    """Why the checkpoint cannot stand in for calibrating an FP8 KV cache."""
    if have == "FP8":
        return None
    if have is None:
        return (f"tensorrt_llm.kv_cache_dtype is 'fp8', but {where} has no kv_cache_quant_algo: "
                "its KV-cache scales were never calibrated, and prequantized skips calibration; "
                "use a checkpoint quantized with an FP8 KV cache (kv_cache_quant_algo \"FP8\") "
                "or kv_cache_dtype 'auto'")
    return (f"tensorrt_llm.kv_cache_dtype is 'fp8', but {where} has kv_cache_quant_algo {have}, "
            "expected \"FP8\"; TensorRT-LLM refuses the conflict")


def prequantized_problems(experiment: Experiment, model_dir: Path) -> list[str]:
    """Why a checkpoint cannot stand in for calibration (``prequantized: true``)."""
    opts = experiment.options
    assert isinstance(opts, TensorrtLlmOptions)
    if not opts.prequantized:
        return []
    found = checkpoint_quantization(model_dir)
    if found is None:
        return [f"tensorrt_llm.prequantized is set, but {model_dir} has no readable "
                f"{HF_QUANT_CONFIG}: it is not a quantized checkpoint, and TensorRT-LLM would "
                "calibrate it on a dataset it cannot download"]
    where = f"the checkpoint's {Path(model_dir) / HF_QUANT_CONFIG}"
    scheme = opts.quantization or DEFAULT_QUANTIZATION.get(experiment.precision)
    problems = [_weights_problem(experiment, scheme, found.get("quant_algo"), where)]
    if opts.kv_cache_dtype == "fp8":
        problems.append(_kv_cache_problem(found.get("kv_cache_quant_algo"), where))
    return [p for p in problems if p is not None]
