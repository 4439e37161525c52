"""Build the prompt set: synthetic prompts of exact token length, or prompts from a file."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path

from harness.config.experiment import Workload
from harness.errors import UserInputError


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


def read_prompt_texts(workload: Workload, path: Path) -> list[str]:
    """The prompts of a .jsonl file ({"prompt": ...} per line), checked before any engine starts.

    The file must exist, every non-blank line must be a JSON object with a 'prompt' string,
    and at least ``num_prompts`` of them must be non-blank; the usable texts are returned.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserInputError(f"{path}: cannot read the prompt file ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UserInputError(f"{path}: the prompt file is not UTF-8 text ({e.reason})") from e
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text = record["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserInputError(
                f"{path}: line {number}: expected a JSON object with a 'prompt' string"
            ) from e
        if not isinstance(text, str):
            raise UserInputError(f"{path}: line {number}: 'prompt' is not a string")
        if text.strip():
            texts.append(text)
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
    workload: Workload, path: Path, encode: Callable[[str], list[int]]
) -> list[list[int]]:
    """Prompts from a .jsonl file ({"prompt": ...} per line), truncated to input_tokens."""
    return encode_prompts(workload, read_prompt_texts(workload, path), encode, path)


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
