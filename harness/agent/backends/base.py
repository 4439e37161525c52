"""The backend contract: load, generate with per-token timing, unload."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.config.experiment import Experiment


@dataclass
class RequestTiming:
    """One request of a batch: token counts and wall-clock timestamps (perf_counter, s)."""

    input_tokens: int
    output_tokens: int
    start_s: float
    end_s: float
    token_times_s: list[float] = field(default_factory=list)

    @property
    def e2e_s(self) -> float:
        """End-to-end latency."""
        return self.end_s - self.start_s

    @property
    def ttft_s(self) -> float | None:
        """Time to the first generated token, when tokens were timed."""
        return self.token_times_s[0] - self.start_s if self.token_times_s else None

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies between consecutive generated tokens."""
        t = self.token_times_s
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first."""
        if len(self.token_times_s) < 2:
            return None
        return (self.token_times_s[-1] - self.token_times_s[0]) / (len(self.token_times_s) - 1)


class Backend(abc.ABC):
    """An inference engine driven by the agent. Engines are imported inside ``load``."""

    #: True when ``generate`` returns a timestamp for every generated token.
    per_token_timestamps: ClassVar[bool] = False
    #: True when ``generate(..., max_new_tokens=1)`` is a prefill-only pass.
    prefill_only_pass: ClassVar[bool] = True

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment

    @abc.abstractmethod
    def load(self, model_path: str) -> None:
        """Load the model and tokenizer at the experiment's precision on its device."""

    @abc.abstractmethod
    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size and the ids of special tokens (never used in synthetic prompts)."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of a text prompt (no special tokens added)."""

    @abc.abstractmethod
    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        """Generate exactly ``max_new_tokens`` tokens for each prompt, as one batch."""

    def synchronize(self) -> None:
        """Wait until the device has finished queued work (window edges)."""

    def unload(self) -> None:
        """Free the model and the device memory it holds."""

    def info(self) -> dict[str, Any]:
        """Engine name, version and effective settings, for provenance."""
        return {}

    def memory_peak_bytes(self) -> int | None:
        """Peak device memory allocated by the engine's allocator, if it knows."""
        return None

    def reset_memory_peak(self) -> None:
        """Start a new peak-memory window, if the engine tracks one."""

    def parameter_counts(self) -> tuple[int, int] | None:
        """Total and embedding parameter counts, if the engine exposes them."""
        return None
