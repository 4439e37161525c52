"""The engine contract, run inside the image: load, generate with per-token timing, unload.

Each backend package has an ``engine`` module with one ``Engine`` subclass; the agent imports
it through the registry (``create_engine``) only when a run starts, so the host never imports
an engine. What differs between engines is declared on the backend's spec (``cls.spec``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.backends.spec import BackendSpec
from harness.config.experiment import Experiment
from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason

#: what every engine's info() must name (reports and bundles rely on them)
REQUIRED_INFO = ("engine", "engine_version")


@dataclass
class RequestTiming:
    """One request of a batch: token counts and wall-clock timestamps (perf_counter, s).

    ``token_times_s`` holds one timestamp per generated token; tokens that reached the agent
    together share one timestamp (one arrival), and inter-token latencies are taken between
    arrivals only, never as zero gaps inside one delivery.
    """

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
    def arrivals_s(self) -> list[float]:
        """Distinct arrival times of tokens (tokens delivered together count once)."""
        out: list[float] = []
        for t in self.token_times_s:
            if not out or t != out[-1]:
                out.append(t)
        return out

    @property
    def itl_s(self) -> list[float]:
        """Inter-token latencies: the gaps between consecutive arrivals."""
        t = self.arrivals_s
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first."""
        if len(self.token_times_s) < 2:
            return None
        return (self.token_times_s[-1] - self.token_times_s[0]) / (len(self.token_times_s) - 1)


class Engine(abc.ABC):
    """An inference engine driven by the agent. Engine libraries are imported inside ``load``."""

    #: the backend this engine belongs to (its capabilities: timestamps, prefill-only pass)
    spec: ClassVar[BackendSpec]

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment

    @property
    def per_token_timestamps(self) -> bool:
        """True when ``generate`` returns a timestamp for every generated token."""
        return self.spec.timestamp_source != "none"

    @property
    def prefill_only_pass(self) -> bool:
        """True when ``generate(..., max_new_tokens=1)`` is a prefill-only pass."""
        return self.spec.prefill_only_pass

    @abc.abstractmethod
    def load(self, model_path: str) -> None:
        """Load the model and tokenizer at the experiment's precision on its device."""

    def refuse_unfit_model(self, model_dir: Path) -> None:
        """Stop before loading when the model's files rule the experiment out (input_invalid)."""
        problems = self.spec.problems_with_model(self.experiment, model_dir)
        if problems:
            raise RunFailure("; ".join(problems), reason=FailureReason.INPUT_INVALID)

    @abc.abstractmethod
    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size and the ids of special tokens (never used in synthetic prompts)."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of a text prompt (no special tokens added)."""

    @abc.abstractmethod
    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        """Generate exactly ``max_new_tokens`` tokens for each prompt, as one batch."""

    @abc.abstractmethod
    def info(self) -> dict[str, Any]:
        """Provenance: ``engine`` and ``engine_version`` (required) and the effective settings."""

    def synchronize(self) -> None:
        """Wait until the device has finished queued work (window edges)."""

    def unload(self) -> None:
        """Free the model and the device memory it holds."""

    def memory_peak_bytes(self) -> int | None:
        """Peak device memory allocated by the engine's allocator, if it knows."""
        return None

    def reset_memory_peak(self) -> None:
        """Start a new peak-memory window, if the engine tracks one."""

    def parameter_counts(self) -> tuple[int, int] | None:
        """Total and embedding parameter counts, if the engine exposes them."""
        return None

    def device_uuids(self) -> list[str] | None:
        """UUIDs of the GPUs the loaded model computes on (None: the engine cannot say)."""
        return None

    def scheduler_token_budget(self) -> int | None:
        """Prompt tokens the engine's scheduler takes in one step, where it has such a limit."""
        return None

    def prefill_interleaving(self, work: list[list[list[int]]]) -> str | None:
        """Why this engine would prefill part of these batches in steps that also decode."""
        if not work:
            return None
        tokens = max(sum(len(p) for p in batch) for batch in work)
        size = max(len(batch) for batch in work)
        return self.experiment.options.prefill_interleaving(
            self.experiment, tokens, size, self.scheduler_token_budget()
        )

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        """The engine's libraries as installed: versions and the CUDA they were built for.

        Imports the engine but needs no device (``harness images check`` runs it in an image
        on a machine without a GPU); ``cuda_runtime`` is None for a CPU build. Names
        ``engine`` and ``engine_version`` like ``info()``.
        """
        raise EnvironmentProblem(
            f"backend {cls.spec.name!r} does not describe its build (its engine has no "
            "build_info()); its image cannot be checked by `harness images check`")


def torch_build_info() -> dict[str, Any]:
    """How the installed torch was built: version, CUDA runtime, cuDNN, NCCL, GPU archs."""
    import torch

    def ask(what: Callable[[], Any]) -> Any:
        try:
            return what()
        except Exception as e:  # noqa: BLE001 - a library that does not load is reported
            return f"unavailable ({type(e).__name__}: {e})"

    cuda = torch.version.cuda
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_git_version": getattr(torch.version, "git_version", None),
        "cuda_runtime": cuda,
        "cuda_built": ask(torch.backends.cuda.is_built),
    }
    if cuda:
        info["cudnn"] = ask(torch.backends.cudnn.version)
        info["nccl"] = ask(lambda: ".".join(str(v) for v in torch.cuda.nccl.version()))
        info["cuda_arch_flags"] = ask(torch._C._cuda_getArchFlags)
    return info


def engine_info(engine: Engine) -> dict[str, Any]:
    """The engine's info, checked to name the engine and its version (reports rely on both)."""
    info = dict(engine.info())
    missing = [k for k in REQUIRED_INFO if not isinstance(info.get(k), str) or not info[k]]
    if missing:
        raise RunFailure(
            f"backend {engine.spec.name!r}: its engine's info() lacks {', '.join(missing)}",
            reason=FailureReason.ENGINE_ERROR,
        )
    info.setdefault("timestamp_source", engine.spec.timestamp_source)
    return info


def create_engine(experiment: Experiment) -> Engine:
    """The engine of this experiment's backend (imports the engine module now)."""
    from harness.backends import registry

    cls = registry.engine_class(registry.get(experiment.backend))
    engine = cls(experiment)
    assert isinstance(engine, Engine)
    return engine
