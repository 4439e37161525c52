"""Options of the PyTorch/transformers backend (``experiment.pytorch``)."""

from __future__ import annotations

from typing import Literal

from harness.backends.spec import BackendOptions


class PytorchOptions(BackendOptions):
    """Options of the PyTorch/transformers backend."""

    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    torch_compile: bool = False
