"""Options of the TensorRT-LLM backend (``experiment.tensorrt_llm``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harness.backends.spec import BackendOptions, length_problem

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

#: TensorRT-LLM's BuildConfig default of max_num_tokens (tokens per in-flight iteration)
DEFAULT_MAX_NUM_TOKENS = 8192
TensorrtLlmQuantization = Literal["fp8", "int8_weight_only", "int4_weight_only", "int4_awq"]


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

    def problems(self, experiment: Experiment) -> list[str]:
        """A sequence limit shorter than a request; quantization asked of the PyTorch runtime."""
        found = length_problem("tensorrt_llm.max_seq_len", self.max_seq_len, experiment)
        if self.runtime == "pytorch" and experiment.precision not in ("fp16", "bf16"):
            found.append(
                f"tensorrt_llm.runtime 'pytorch' does not quantize a checkpoint, so it cannot "
                f"give precision {experiment.precision!r}; use runtime 'tensorrt'"
            )
        return found

    def gpus_per_run(self) -> int:
        """GPUs one engine spans: tensor x pipeline parallel size."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    def quantization_scheme_given(self) -> str | None:
        """The quantization algorithm named, if any."""
        return self.quantization

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
