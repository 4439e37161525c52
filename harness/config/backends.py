"""Backend options models and what each backend can do.

This is the one table that knows backend names on the host side. Everything else asks it
for capabilities instead of comparing names. Importing it never imports an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
Device = Literal["cuda", "cpu"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PytorchOptions(_Options):
    """Options of the PyTorch/transformers backend."""

    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    torch_compile: bool = False


class VllmOptions(_Options):
    """Options of the vLLM offline engine (``vllm.LLM``)."""

    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int = Field(256, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    max_model_len: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    enable_prefix_caching: bool = False
    enable_chunked_prefill: bool | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    quantization: str | None = None
    dtype: Literal["auto", "float32", "float16", "bfloat16"] | None = None
    kv_cache_space_gib: float | None = Field(
        None, gt=0, description="CPU only: KV-cache size (VLLM_CPU_KVCACHE_SPACE)"
    )


class TensorrtLlmOptions(_Options):
    """Options of the TensorRT-LLM LLM API (``tensorrt_llm.LLM``)."""

    max_batch_size: int = Field(64, ge=1)
    max_num_tokens: int | None = Field(None, ge=1)
    max_seq_len: int | None = Field(None, ge=1)
    kv_cache_free_gpu_memory_fraction: float = Field(0.9, gt=0, le=1)
    enable_block_reuse: bool = False
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    quantization: Literal["fp8", "int8_weight_only", "int4_weight_only", "int4_awq"] | None = None
    kv_cache_dtype: Literal["auto", "fp8"] = "auto"


@dataclass(frozen=True)
class BackendSpec:
    """What the host knows about a backend: options, image, capabilities, agent class."""

    name: str
    options: type[_Options]
    image: str
    agent_class: str
    precisions: dict[str, tuple[str, ...]]
    per_token_timestamps: bool = True
    prefill_only_pass: bool = True
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices this backend runs on."""
        return tuple(self.precisions)


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="pytorch",
            options=PytorchOptions,
            image="pytorch",
            agent_class="harness.agent.backends.pytorch:PytorchBackend",
            precisions={"cuda": ("fp32", "fp16", "bf16"), "cpu": ("fp32", "fp16", "bf16")},
        ),
        BackendSpec(
            name="vllm",
            options=VllmOptions,
            image="vllm",
            agent_class="harness.agent.backends.vllm:VllmBackend",
            precisions={"cuda": ("fp32", "fp16", "bf16", "fp8"), "cpu": ("fp32", "bf16")},
        ),
        BackendSpec(
            name="tensorrt_llm",
            options=TensorrtLlmOptions,
            image="tensorrt-llm",
            agent_class="harness.agent.backends.tensorrt_llm:TensorrtLlmBackend",
            precisions={"cuda": ("fp16", "bf16", "fp8", "int8", "int4")},
        ),
    )
}

BackendName = Literal["pytorch", "vllm", "tensorrt_llm"]
