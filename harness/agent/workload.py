"""Build the prompt set: synthetic prompts of exact token length, or prompts from a file."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from harness.config.datasets import (
    DatasetFile,
    dataset_file,
    field_of,
    prompt_texts,
    read_file,
    sha256_of,
    value_at,
)
from harness.config.experiment import Workload
from harness.errors import UserInputError
from harness.results.schema import RunSpec


def synthetic_prompts(
    workload: Workload, vocab_size: int, special_ids: list[int]
) -> list[list[int]]:
    """``num_prompts`` random token sequences of exactly ``input_tokens``, from the seed."""
    special = set(special_ids)
    pool = [t for t in range(vocab_size) if t not in special]
    if not pool:
        raise UserInputError("the tokenizer has no ordinary tokens to build prompts from")
    rng = random.Random(workload.seed)
    return [
        [rng.choice(pool) for _ in range(workload.input_tokens)]
        for _ in range(workload.num_prompts)
    ]


def dataset_for(spec: RunSpec, field: str) -> DatasetFile:
    """The file the run spec gives for an experiment field (the controller resolved it).

    A run spec without one (written by an older controller) names the path as written, read
    from the working directory as such specs were.
    """
    for entry in spec.datasets:
        if entry.field == field:
            return entry
    value = str(value_at(spec.experiment, field))
    entry, _ = dataset_file(field_of(field), value, Path.cwd())
    return entry


def read_checked(dataset: DatasetFile, what: str) -> tuple[bytes, Path]:
    """A file's bytes where the agent reads it, refused when its SHA-256 changed since checked."""
    path = Path(dataset.agent_path or dataset.path)
    data = read_file(path, what, regular=False)
    digest = sha256_of(data)
    if digest != dataset.sha256:
        raise UserInputError(
            f"{path}: the {what} changed since it was checked (sha256 {digest[:12]}, "
            f"recorded {dataset.sha256[:12]}); restore it, or start the study anew with it")
    return data, path


def read_prompt_texts(workload: Workload, dataset: DatasetFile) -> list[str]:
    """The prompts of a .jsonl file, checked before any engine starts.

    The file must still have the SHA-256 the controller recorded when the study began, every
    non-blank line must be a JSON object with a "prompt" string, and at least ``num_prompts``
    of them must be non-blank.
    """
    data, path = read_checked(dataset, "prompts file")
    texts = prompt_texts(data, str(path))
    if len(texts) < workload.num_prompts:
        raise UserInputError(
            f"{path}: has {len(texts)} usable prompts, the workload asks for "
            f"{workload.num_prompts}"
        )
    return texts


def encode_prompts(
    workload: Workload, texts: list[str], encode: Callable[[str], list[int]], source: Path
) -> list[list[int]]:
    """The first ``num_prompts`` texts that encode to tokens, truncated to input_tokens."""
    prompts: list[list[int]] = []
    for text in texts:
        ids = encode(text)[: workload.input_tokens]
        if ids:
            prompts.append(ids)
        if len(prompts) == workload.num_prompts:
            break
    if len(prompts) < workload.num_prompts:
        raise UserInputError(
            f"{source}: has {len(prompts)} usable prompts, the workload asks for "
            f"{workload.num_prompts}"
        )
    return prompts


def file_prompts(
    workload: Workload, dataset: DatasetFile, encode: Callable[[str], list[int]]
) -> list[list[int]]:
    """Prompts from a .jsonl file ({"prompt": ...} per line), truncated to input_tokens."""
    path = Path(dataset.agent_path or dataset.path)
    return encode_prompts(workload, read_prompt_texts(workload, dataset), encode, path)


def prompts_sha256(prompts: list[list[int]]) -> str:
    """SHA-256 of the prompt token ids, so two runs can show they sent the same prompts."""
    digest = hashlib.sha256()
    for p in prompts:
        digest.update(json.dumps(p, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def batches(prompts: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """Split prompts into consecutive batches (the last may be smaller)."""
    return [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
