"""PyTorch/transformers: ``model.generate`` on static batches, every decoding step timed."""

from __future__ import annotations

from harness.backends.pytorch.options import PytorchOptions
from harness.backends.spec import COMPILER_PACKAGES, BackendSpec, ImageRecipe, ImageVariant, cuda_torch

#: a plain `torch` requirement pulls CUDA wheels; the CPU index has the +cpu builds
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"

SPEC = BackendSpec(
    name="pytorch",
    summary="Hugging Face transformers on PyTorch, static batches",
    options=PytorchOptions,
    engine="harness.backends.pytorch.engine:PytorchEngine",
    precisions={"cuda": ("fp32", "fp16", "bf16"), "cpu": ("fp32", "fp16", "bf16")},
    timestamp_source="engine_step",
    null_block_in_id=True,
    rank=0,
    recipe=ImageRecipe(
        image="pytorch",
        variants={
            "cpu": ImageVariant(
                base="python:3.11-slim",
                extras=("agent", "pytorch"),
                pins=("torch==2.13.0",),  # resolves to +cpu from CPU_INDEX or the wheelhouse
                pip_args=CPU_INDEX,
            ),
            # Both paths give torch 2.9.0 built for CUDA 12.8 with cuDNN 9: the vendor image's
            # (reused through the venv's system site packages, which satisfy the pin), or
            # PyPI's wheel of it with its nvidia-*-cu12 wheels (docs/images.md).
            "cuda": ImageVariant(
                base="pytorch/pytorch:2.9.0-cuda12.8-cudnn9-runtime",
                extras=("agent", "pytorch"),
                pins=(cuda_torch("2.9.0"),),
                cuda="12.8",
                apt_packages=COMPILER_PACKAGES,
            ),
        },
    ),
)
