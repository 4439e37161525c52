"""The requests of a serving run: prompts, output lengths and send times, all from the seed.

Synthetic requests draw each prompt's and output's length from ``serving.input_length`` and
``serving.output_length`` around the workload's ``input_tokens`` and ``output_tokens``, and
their token ids from the tokenizer's ordinary vocabulary. A requests file gives prompts (token
ids from the model's tokenizer) and output lengths (docs/serving.md, section 3).

Send times (``arrival_offsets``): with ``request_rate`` the gaps are exponential (Poisson
arrivals) or gamma with shape ``burstiness`` and mean ``1 / request_rate``, scaled so that the
last request is due at ``num_requests / request_rate``, as a common serving benchmark's load
generator does (docs/serving.md, section 2, cites it): a seed then changes the pattern, never the mean
rate. Without a rate every request is due at once, or, with ``concurrency``, when one of the
closed loop's slots frees (no send time).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.config.experiment import Experiment
from harness.config.request_files import FileRequest
from harness.config.serving import Lengths, Serving
from harness.errors import UserInputError


@dataclass(frozen=True)
class PlannedRequest:
    """One request to send: its prompt's token ids, its output length and when it is due."""

    index: int
    prompt: list[int]
    output_tokens: int
    #: seconds after the load starts; None: when a slot of the closed loop frees
    at_s: float | None


def _rng(seed: int, stream: str) -> random.Random:
    """A generator of its own for each use of the seed (lengths, tokens, arrivals)."""
    return random.Random(f"{seed}/{stream}")


def draw_lengths(lengths: Lengths, center: int, n: int, rng: random.Random) -> list[int]:
    """``n`` token lengths around ``center`` as ``lengths`` says, each within its bounds."""
    low, high = lengths.bounds(center)
    if lengths.distribution == "fixed":
        return [center] * n
    if lengths.distribution == "uniform":
        return [rng.randint(low, high) for _ in range(n)]
    mu = math.log(center)
    return [min(high, max(low, round(rng.lognormvariate(mu, lengths.spread)))) for _ in range(n)]


def synthetic_requests(
    exp: Experiment, vocab_size: int, special: Sequence[int]
) -> list[tuple[list[int], int]]:
    """``num_requests`` (prompt, output length) pairs of random ordinary tokens."""
    serving, workload = exp.serving, exp.workload
    pool = [t for t in range(vocab_size) if t not in set(special)]
    if not pool:
        raise UserInputError("the tokenizer has no ordinary tokens to build prompts from")
    n = serving.num_requests
    ins = draw_lengths(serving.input_length, workload.input_tokens, n, _rng(workload.seed, "input"))
    outs = draw_lengths(serving.output_length, workload.output_tokens, n,
                        _rng(workload.seed, "output"))
    tokens = _rng(workload.seed, "tokens")
    return [([tokens.choice(pool) for _ in range(k)], out) for k, out in zip(ins, outs, strict=True)]


def file_request_tokens(
    exp: Experiment, records: Sequence[FileRequest], encode: Callable[[str], list[int]], name: str
) -> list[tuple[list[int], int]]:
    """The first ``num_requests`` records that encode to tokens, with their output lengths."""
    found: list[tuple[list[int], int]] = []
    for record in records:
        prompt = encode(record.prompt)
        if record.reply is not None:
            out = len(encode(record.reply))
        else:
            out = record.output_tokens or exp.workload.output_tokens
        if prompt and out > 0:
            found.append((prompt, out))
        if len(found) == exp.serving.num_requests:
            return found
    raise UserInputError(f"{name}: has {len(found)} usable requests (a prompt and a reply that "
                         f"encode to tokens), the experiment asks for {exp.serving.num_requests}")


def arrival_offsets(serving: Serving, n: int, seed: int) -> list[float] | None:
    """When each request is due, in seconds after the load starts (None: a closed loop)."""
    rate = serving.request_rate
    if rate is None:
        return None if serving.concurrency is not None else [0.0] * n
    rng = _rng(seed, "arrivals")
    shape = serving.burstiness if serving.arrival == "gamma" else 1.0
    total, out = 0.0, []
    for _ in range(n):
        total += rng.gammavariate(shape, 1.0 / (rate * shape))
        out.append(total)
    scale = (n / rate) / total if total > 0 else 1.0
    return [t * scale for t in out]


def plan_requests(exp: Experiment, pairs: list[tuple[list[int], int]]) -> list[PlannedRequest]:
    """The requests in sending order, each with its send time."""
    offsets = arrival_offsets(exp.serving, len(pairs), exp.workload.seed)
    return [PlannedRequest(i, prompt, out, offsets[i] if offsets is not None else None)
            for i, (prompt, out) in enumerate(pairs)]


def warmup_requests(exp: Experiment, vocab_size: int, special: Sequence[int]) -> list[PlannedRequest]:
    """``warmup_requests`` synthetic requests of the workload's lengths, due at once.

    Drawn apart from the load's (their own seed stream), so a prefix cache never holds the
    load's prompts.
    """
    pool = [t for t in range(vocab_size) if t not in set(special)]
    rng = _rng(exp.workload.seed, "warmup")
    w = exp.workload
    return [PlannedRequest(i, [rng.choice(pool) for _ in range(w.input_tokens)], w.output_tokens, 0.0)
            for i in range(exp.serving.warmup_requests if pool else 0)]


def requests_sha256(planned: Sequence[PlannedRequest]) -> str:
    """SHA-256 of the requests' prompts, output lengths and send times (same load, same hash)."""
    digest = hashlib.sha256()
    for r in planned:
        digest.update(json.dumps([r.prompt, r.output_tokens, r.at_s], separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()
