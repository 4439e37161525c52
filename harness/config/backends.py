"""Backend options models and what each backend can do.

This is the one table that knows backend names on the host side. Everything else asks it
for capabilities instead of comparing names. Importing it never imports an engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
Device = Literal["cuda", "cpu"]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self, experiment: Any) -> list[str]:
        """Why these options cannot serve ``experiment`` (empty when they can)."""
        return []


def _length_problem(field_name: str, limit: int | None, experiment: Any) -> list[str]:
    """A problem when a sequence-length limit is shorter than one request of the workload."""
    need = experiment.workload.input_tokens + experiment.workload.output_tokens
    if limit is not None and limit < need:
        return [
            f"{field_name} {limit} is shorter than one request "
            f"(input_tokens + output_tokens = {need})"
        ]
    return []


class PytorchOptions(_Options):
    """Options of the PyTorch/transformers backend."""

    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    torch_compile: bool = False


VllmQuantization = Literal[
    "fp8", "fbgemm_fp8", "modelopt", "compressed-tensors",
    "experts_int8", "awq", "awq_marlin", "gptq", "gptq_marlin",
]  # fmt: skip
VLLM_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class VllmOptions(_Options):
    """Options of the vLLM offline engine (``vllm.LLM``)."""

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
        None, description="vLLM quantization method; precision fp8 defaults to 'fp8'"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] | None = Field(
        None, description="activation dtype; set by precision unless the weights are quantized"
    )
    kv_cache_space_gib: float | None = Field(
        None, gt=0, description="KV-cache size in GiB (kv_cache_memory_bytes); "
        "unset: vLLM sizes it from gpu_memory_utilization, which on CPU means RAM",
    )

    def problems(self, experiment: Any) -> list[str]:
        """A dtype that contradicts the precision, or a model length shorter than a request."""
        found = _length_problem("vllm.max_model_len", self.max_model_len, experiment)
        implied = VLLM_DTYPES.get(experiment.precision)
        if implied is not None and self.dtype not in (None, "auto", implied):
            found.append(
                f"vllm.dtype {self.dtype!r} contradicts precision {experiment.precision!r} "
                f"(which runs as {implied!r}); remove vllm.dtype or change the precision"
            )
        return found


TensorrtLlmQuantization = Literal["fp8", "int8_weight_only", "int4_weight_only", "int4_awq"]


class TensorrtLlmOptions(_Options):
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

    def problems(self, experiment: Any) -> list[str]:
        """A sequence limit shorter than a request; quantization asked of the PyTorch runtime."""
        found = _length_problem("tensorrt_llm.max_seq_len", self.max_seq_len, experiment)
        if self.runtime == "pytorch" and experiment.precision not in ("fp16", "bf16"):
            found.append(
                f"tensorrt_llm.runtime 'pytorch' does not quantize a checkpoint, so it cannot "
                f"give precision {experiment.precision!r}; use runtime 'tensorrt'"
            )
        return found


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
    #: quantized precision -> the options' ``quantization`` values that produce it
    quantization: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: quantized precision -> the scheme used when ``quantization`` is not given
    default_quantization: dict[str, str] = field(default_factory=dict)
    #: where the agent keeps built engines; the docker runtime mounts a host folder there
    cache_mount: str | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices this backend runs on."""
        return tuple(self.precisions)

    def quantization_scheme(self, precision: str, scheme: str | None) -> str | None:
        """The quantization scheme a run at ``precision`` uses (None for unquantized)."""
        if precision not in self.quantization:
            return None
        return scheme or self.default_quantization.get(precision)

    def quantization_problem(self, precision: str, scheme: str | None) -> str | None:
        """Why ``scheme`` cannot produce ``precision`` on this backend, or None if it can."""
        allowed = self.quantization.get(precision)
        key = f"{self.name}.quantization"
        if allowed is None:
            if scheme is None:
                return None
            fits = [p for p, schemes in self.quantization.items() if scheme in schemes]
            hint = f" (it gives precision {', '.join(fits)})" if fits else ""
            return (
                f"{key} {scheme!r} quantizes the weights, but precision {precision!r} is not "
                f"a quantized precision{hint}; remove {key} or change the precision"
            )
        if scheme is None:
            if precision in self.default_quantization:
                return None
            return (
                f"precision {precision!r} on backend {self.name!r} needs {key} "
                f"(one of: {', '.join(allowed)})"
            )
        if scheme not in allowed:
            return (
                f"{key} {scheme!r} cannot give precision {precision!r} "
                f"(for {precision!r} use one of: {', '.join(allowed)})"
            )
        return None


def cache_root() -> Path:
    """The host folder holding the backends' caches ($XDG_CACHE_HOME/harness, ~/.cache/harness)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "harness"


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
            precisions={
                "cuda": ("fp32", "fp16", "bf16", "fp8", "int8", "int4"),
                "cpu": ("fp32", "fp16", "bf16"),
            },
            quantization={
                "fp8": ("fp8", "fbgemm_fp8", "modelopt", "compressed-tensors"),
                "int8": ("experts_int8", "compressed-tensors", "gptq", "gptq_marlin"),
                "int4": ("awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors"),
            },
            default_quantization={"fp8": "fp8"},  # online FP8 from a 16-bit checkpoint
        ),
        BackendSpec(
            name="tensorrt_llm",
            options=TensorrtLlmOptions,
            image="tensorrt-llm",
            agent_class="harness.agent.backends.tensorrt_llm:TensorrtLlmBackend",
            precisions={"cuda": ("fp16", "bf16", "fp8", "int8", "int4")},
            quantization={
                "fp8": ("fp8",),
                "int8": ("int8_weight_only",),
                "int4": ("int4_weight_only", "int4_awq"),
            },
            default_quantization={
                "fp8": "fp8", "int8": "int8_weight_only", "int4": "int4_weight_only"
            },
            cache_mount="/engine-cache",
        ),
    )
}

BackendName = Literal["pytorch", "vllm", "tensorrt_llm"]
