"""TensorRT-LLM: its LLM API on NVIDIA GPUs, built engines cached on the host, tokens streamed."""

from __future__ import annotations

from harness.backends.spec import BackendSpec, ImageRecipe, ImageVariant, ServingSupport
from harness.backends.tensorrt_llm.options import (
    DEFAULT_QUANTIZATION,
    TensorrtLlmOptions,
    prequantized_problems,
)
from harness.backends.tensorrt_llm.serve import launch

#: where the engine cache is mounted in the container (a host folder, reused across runs)
CACHE_MOUNT = "/engine-cache"

SPEC = BackendSpec(
    name="tensorrt_llm",
    summary="TensorRT-LLM's LLM API (TensorRT engines cached on the host, or its PyTorch runtime)",
    options=TensorrtLlmOptions,
    engine="harness.backends.tensorrt_llm.engine:TensorrtLlmEngine",
    precisions={"cuda": ("fp16", "bf16", "fp8", "int8", "int4")},
    quantization={
        "fp8": ("fp8",),
        "int8": ("int8_weight_only",),
        "int4": ("int4_weight_only", "int4_awq"),
    },
    default_quantization=DEFAULT_QUANTIZATION,
    cache_mount=CACHE_MOUNT,
    model_problems=prequantized_problems,
    timestamp_source="stream",
    # trtllm-serve's /metrics holds iteration statistics as JSON, not a Prometheus gauge
    serving=ServingSupport(launch=launch),
    null_block_in_id=True,
    rank=2,
    recipe=ImageRecipe(
        image="tensorrt-llm",
        variants={
            "cuda": ImageVariant(
                base="nvcr.io/nvidia/tensorrt-llm/release:1.0.0",
                extras=("agent",),
                # PyPI has only a stub of tensorrt-llm that fetches the wheel from NVIDIA's own
                # index at install time: no wheelhouse can hold it (docs/images.md)
                offline=False,
                cuda="12.9",
                # NVIDIA's entrypoint sets up CUDA forward compatibility before the agent runs
                vendor_entrypoint="/opt/nvidia/nvidia_entrypoint.sh",
                dirs=(CACHE_MOUNT,),
            ),
        },
    ),
)
