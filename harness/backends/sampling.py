"""Sampling arguments every engine gets: exactly ``max_new_tokens`` per request, EOS ignored.

Engines with a SamplingParams-like object take these keyword arguments; each says how it
decodes greedily (``greedy``), since the engines spell greedy differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.config.experiment import Decoding


def exact_length(decoding: Decoding, max_new_tokens: int, greedy: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for exactly ``max_new_tokens`` tokens, token ids out, one sequence."""
    args: dict[str, Any] = {
        "max_tokens": max_new_tokens,
        "min_tokens": max_new_tokens,
        "ignore_eos": True,
        "detokenize": False,  # the agent works on token ids
        "n": 1,
    }
    if decoding.temperature > 0:
        args.update(temperature=decoding.temperature, top_p=decoding.top_p)
        if decoding.top_k > 0:
            args["top_k"] = decoding.top_k
    else:
        args.update(greedy)
    return args
