"""Which engines interleave a batch's prefill with decode (the prefill split is then unavailable)."""

from __future__ import annotations

from typing import Any

from harness.backends.engine import Engine, RequestTiming
from harness.config.experiment import Experiment


def experiment(backend: str, batch_size: int, input_tokens: int, **options: object) -> Experiment:
    return Experiment(
        model="m", backend=backend, device="cuda", precision="bf16", batch_size=batch_size,
        workload={"num_prompts": batch_size, "input_tokens": input_tokens, "output_tokens": 4},
        **({backend: options} if options else {}),
    )


def why(exp: Experiment, budget: int | None = None) -> str | None:
    return exp.options.prefill_interleaving(
        exp, exp.batch_size * exp.workload.input_tokens, exp.batch_size, budget)


def test_static_batches_never_interleave() -> None:
    assert why(experiment("pytorch", 64, 4096)) is None


def test_vllm_interleaves_past_its_scheduler_budget() -> None:
    assert why(experiment("vllm", 8, 256), budget=2048) is None
    found = why(experiment("vllm", 8, 512), budget=2048)
    assert found and "4096 prompt tokens exceed the 2048 tokens" in found
    configured = why(experiment("vllm", 8, 512, max_num_batched_tokens=8192))
    assert configured is None  # the options' own budget when the engine does not say
    assert "max_num_seqs 4" in (why(experiment("vllm", 8, 16, max_num_seqs=4)) or "")


def test_tensorrt_llm_interleaves_past_max_num_tokens_or_batch_size() -> None:
    assert why(experiment("tensorrt_llm", 8, 1024)) is None  # 8192, BuildConfig's default
    found = why(experiment("tensorrt_llm", 16, 1024))
    assert found and "16384 prompt tokens exceed the 8192 tokens" in found
    assert "max_batch_size 2" in (why(experiment("tensorrt_llm", 4, 8, max_batch_size=2)) or "")


class Budgeted(Engine):
    """An engine whose scheduler takes 100 prompt tokens per step (nothing else is used)."""

    spec = experiment("vllm", 1, 1).spec

    def scheduler_token_budget(self) -> int | None:
        return 100

    def load(self, model_path: str) -> None: ...

    def vocab(self) -> tuple[int, list[int]]:
        return 10, []

    def encode(self, text: str) -> list[int]:
        return [1]

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        return []

    def info(self) -> dict[str, Any]:
        return {"engine": "budgeted", "engine_version": "0"}


def test_the_engine_asks_its_options_with_the_largest_batch_and_its_own_budget() -> None:
    engine = Budgeted(experiment("vllm", 4, 40))
    assert engine.prefill_interleaving([[[1] * 40] * 2, [[1] * 10] * 2]) is None  # 80 tokens
    found = engine.prefill_interleaving([[[1] * 40] * 3])
    assert found and "120 prompt tokens exceed the 100 tokens" in found
