"""The experiment: one deployment configuration to measure."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.config.backends import (
    BACKENDS,
    BackendName,
    Device,
    Precision,
    PytorchOptions,
    TensorrtLlmOptions,
    VllmOptions,
)
from harness.config.canonical import canonical_text, id_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Strict):
    """Which prompts are sent and how many tokens each request generates."""

    dataset: str = Field(
        "synthetic", description="synthetic | path to a .jsonl file with a 'prompt' field"
    )
    num_prompts: int = Field(64, ge=1, le=1_000_000)
    input_tokens: int = Field(
        128, ge=1, le=1_000_000, description="exact prompt length (synthetic) or truncation"
    )
    output_tokens: int = Field(
        128, ge=1, le=1_000_000, description="tokens generated per request, EOS ignored"
    )
    seed: int = 42

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value == "synthetic" or value.endswith(".jsonl"):
            return value
        if value.startswith("hf:"):
            raise ValueError(
                "Hugging Face datasets are not read directly; export the prompts to a .jsonl "
                "file with one {\"prompt\": ...} object per line"
            )
        raise ValueError("expected 'synthetic' or a path ending in .jsonl")


class Decoding(_Strict):
    """Sampling parameters; temperature 0 means greedy."""

    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)


class Measurement(_Strict):
    """How the agent measures: baseline, warmup, window, sampling."""

    warmup_batches: int = Field(3, ge=0, le=10_000)
    warmup_until_cv: float | None = Field(
        None, gt=0, lt=1, description="warm up until batch-latency CV falls below this"
    )
    warmup_max_batches: int = Field(20, ge=1, le=10_000)
    baseline_s: float = Field(10.0, ge=0, le=3600)
    min_window_s: float = Field(10.0, ge=0, le=86_400)
    sample_interval_ms: int = Field(100, ge=10, le=10_000)
    prefill_split: bool = True


class Experiment(_Strict):
    """One experiment: model, engine, device, precision, batch size, workload, options."""

    model: str = Field(min_length=1, description="hub id (read from the mounted cache) or path")
    backend: BackendName = "pytorch"
    device: Device = "cuda"
    precision: Precision = "bf16"
    batch_size: int = Field(1, ge=1, le=65_536)
    workload: Workload = Workload()
    decoding: Decoding = Decoding()
    measurement: Measurement = Measurement()
    pytorch: PytorchOptions | None = None
    vllm: VllmOptions | None = None
    tensorrt_llm: TensorrtLlmOptions | None = None

    @model_validator(mode="after")
    def _backend_can_do_it(self) -> Experiment:
        spec = BACKENDS[self.backend]
        if self.device not in spec.precisions:
            raise ValueError(
                f"backend {self.backend!r} does not run on device {self.device!r} "
                f"(it runs on: {', '.join(spec.devices)})"
            )
        allowed = spec.precisions[self.device]
        if self.precision not in allowed:
            raise ValueError(
                f"backend {self.backend!r} on {self.device} cannot run precision "
                f"{self.precision!r} (it supports: {', '.join(allowed)})"
            )
        options = self.options
        why = spec.quantization_problem(self.precision, getattr(options, "quantization", None))
        problems = ([why] if why else []) + options.problems(self)  # type: ignore[attr-defined]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def foreign_blocks(self) -> list[str]:
        """Options blocks given for backends other than this experiment's."""
        return [n for n in BACKENDS if n != self.backend and getattr(self, n) is not None]

    @property
    def options(self) -> BaseModel:
        """The active backend's options, defaults filled in."""
        value = getattr(self, self.backend)
        return value if value is not None else BACKENDS[self.backend].options()

    def resolved(self) -> Experiment:
        """This experiment with only its own backend's options block, defaults filled in."""
        if getattr(self, self.backend) is not None and not self.foreign_blocks():
            return self
        blocks: dict[str, Any] = {name: None for name in BACKENDS}
        blocks[self.backend] = self.options
        return self.model_copy(update=blocks)

    def canonical_json(self) -> str:
        """The resolved config as canonical JSON (sorted keys, no whitespace)."""
        return id_text(self.resolved())

    @cached_property
    def id(self) -> str:
        """A short stable hash of the canonical resolved config (computed once per instance)."""
        return id_of(self.canonical_json())

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, as pydantic makes it; a copy with changed fields drops the cached id."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.__dict__.pop("id", None)
        return copied


def id_text(
    value: BaseModel,
    dumped: dict[str, Any] | None = None,
    known: Mapping[str, str] | None = None,
) -> str:
    """What an id hashes: a resolved experiment's (or one of its parts') canonical JSON.

    The one rule for ids. A caller that has ``value``'s JSON-mode dump passes it as ``dumped``
    (never changed here), and ``known`` maps fields to the ``id_text`` of their values where
    it has them (sub-models that many experiments share); the text is the same either way.
    """
    if dumped is None:
        dumped = value.model_dump(mode="json", exclude_none=False)
    return canonical_text(dumped, known)


Order = Literal["sequential", "interleaved", "shuffled"]
Runner = Literal["auto", "docker", "local"]
