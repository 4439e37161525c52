"""Options of the vLLM backend (``experiment.vllm``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from harness.backends import weights
from harness.backends.spec import BackendOptions, length_problem

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

VllmQuantization = Literal[
    "fp8_per_tensor", "fp8_per_channel", "fp8_per_block",
    "fp8", "fbgemm_fp8", "modelopt", "compressed-tensors",
    "experts_int8", "awq", "awq_marlin", "gptq", "gptq_marlin",
]  # fmt: skip
#: vLLM 0.32.0's online FP8 methods: they quantize a 16-bit checkpoint as it loads
ONLINE_FP8 = ("fp8_per_tensor", "fp8_per_channel", "fp8_per_block")
#: methods that quantize only a mixture-of-experts model's experts (linear layers stay 16-bit)
EXPERTS_ONLY = ("experts_int8",)
#: refused by vLLM 0.32.0 (ModelConfig._verify_quantization: DEPRECATED_QUANTIZATION_METHODS)
REFUSED = {
    "fbgemm_fp8": "is deprecated in vLLM 0.32.0, which refuses it without "
    "--allow-deprecated-quantization; use fp8_per_tensor (online FP8 of a 16-bit checkpoint) or "
    "a checkpoint quantized to FP8 with quantization 'fp8'",
}
#: the method of precision fp8 when none is named: online FP8 of a 16-bit checkpoint
DEFAULT_FP8 = "fp8_per_tensor"
#: unquantized precision -> vLLM's dtype
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class VllmOptions(BackendOptions):
    """Options of the vLLM engine (``vllm.LLM``)."""

    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="share of GPU memory (on CPU: of RAM) vLLM may take"
    )
    max_num_seqs: int = Field(256, ge=1, description="most requests scheduled in one step")
    max_num_batched_tokens: int | None = Field(None, ge=1)
    max_model_len: int | None = Field(None, ge=1)
    enforce_eager: bool = Field(False, description="no CUDA graphs / torch.compile")
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enable_prefix_caching: bool = False
    enable_chunked_prefill: bool | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    quantization: VllmQuantization | None = Field(
        None, description="vLLM quantization method; precision fp8 defaults to online "
        "'fp8_per_tensor' (or 'fp8' for a checkpoint already quantized to FP8)",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] | None = Field(
        None, description="activation dtype; set by precision unless the weights are quantized"
    )
    kv_cache_space_gib: float | None = Field(
        None, gt=0, description="KV-cache size in GiB (kv_cache_memory_bytes); "
        "unset: vLLM sizes it from gpu_memory_utilization, which on CPU means RAM",
    )

    def problems(self, experiment: Experiment) -> list[str]:
        """A dtype that contradicts the precision, or a model length shorter than a request."""
        found = length_problem("vllm.max_model_len", self.max_model_len, experiment)
        implied = DTYPES.get(experiment.precision)
        if implied is not None and self.dtype not in (None, "auto", implied):
            found.append(
                f"vllm.dtype {self.dtype!r} contradicts precision {experiment.precision!r} "
                f"(which runs as {implied!r}); remove vllm.dtype or change the precision"
            )
        return found

    def gpus_per_run(self) -> int:
        """GPUs the engine spans: its tensor-parallel size."""
        return self.tensor_parallel_size

    def quantization_scheme_given(self) -> str | None:
        """The quantization method named, if any."""
        return self.quantization

    def max_running_requests(self) -> int | None:
        """The most requests vLLM schedules per step: max_num_seqs."""
        return self.max_num_seqs

    def prefill_interleaving(
        self, experiment: Experiment, batch_tokens: int, batch_size: int, token_budget: int | None
    ) -> str | None:
        """Why vLLM would run part of a batch's prefill in steps that also decode.

        Its scheduler takes at most max_num_seqs requests and max_num_batched_tokens tokens
        per step; the rest of the prefill runs in later steps (chunked prefill).
        """
        if batch_size > self.max_num_seqs:
            return (f"a batch of {batch_size} requests exceeds vllm.max_num_seqs "
                    f"{self.max_num_seqs}: later requests are prefilled while earlier ones decode")
        budget = token_budget or self.max_num_batched_tokens
        if budget is not None and batch_tokens > budget:
            return (f"a batch's {batch_tokens} prompt tokens exceed the {budget} tokens vLLM "
                    "schedules per step (max_num_batched_tokens): the rest of the prefill runs "
                    "in steps that also decode (chunked prefill)")
        return None


def checkpoint_method(config: Mapping[str, Any]) -> str | None:
    """The quantization method a checkpoint's config.json names (quantization_config)."""
    block = config.get("quantization_config")
    method = block.get("quant_method") if isinstance(block, Mapping) else None
    return str(method) if method else None


def quantization_method(experiment: Experiment, config: Mapping[str, Any]) -> str | None:
    """The method vLLM is given for this experiment on the checkpoint whose config is ``config``.

    vLLM 0.32.0 quantizes a 16-bit checkpoint online only with the ``fp8_per_*`` methods: it
    rewrites ``fp8`` to ``fp8_per_tensor`` itself (model_loader/weight_utils.py) and keeps
    calling it ``fp8``; so the rewrite is made here, where results record it. A checkpoint that
    is already quantized keeps its own method (None: vLLM reads it from the checkpoint).
    """
    opts = experiment.options
    assert isinstance(opts, VllmOptions)
    online = checkpoint_method(config) is None
    given = opts.quantization
    if given is None:
        return DEFAULT_FP8 if experiment.precision == "fp8" and online else None
    return DEFAULT_FP8 if given == "fp8" and online else given


def model_problems(experiment: Experiment, model_dir: Path) -> list[str]:
    """Methods the checkpoint rules out: experts-only on a dense model, online on a quantized one."""
    opts = experiment.options
    assert isinstance(opts, VllmOptions)
    config = weights.model_config(model_dir)
    method = quantization_method(experiment, config)
    found = []
    if method in EXPERTS_ONLY and weights.num_experts(config) == 0:
        found.append(
            f"vllm.quantization {method!r} quantizes only the experts of a mixture-of-experts "
            f"model, and {model_dir} is dense (its config.json names no experts): it would run "
            f"in 16 bit while labelled {experiment.precision}; use a checkpoint quantized to "
            f"{experiment.precision} (gptq, awq, compressed-tensors) instead"
        )
    saved = checkpoint_method(config)
    if method in ONLINE_FP8 and saved is not None:
        found.append(
            f"vllm.quantization {method!r} quantizes a 16-bit checkpoint as it loads, but "
            f"{model_dir} is already quantized ({saved}); vLLM refuses the mismatch: leave "
            f"vllm.quantization unset or set it to {saved!r}"
        )
    return found
