"""Files of requests for serving mode: JSONL of prompts with output lengths, or ShareGPT's JSON.

Shared by the host, which checks a file before anything starts (``count``), and the agent,
which reads the same records (docs/serving.md, section 3):

- ``.jsonl``: one JSON object per line with a ``"prompt"`` string and, optionally, an
  ``"output_tokens"`` whole number (without it, the workload's ``output_tokens``);
- ``.json``: ShareGPT's conversation format, a list of ``{"conversations": [{"from", "value"},
  ...]}``; each conversation's first human turn is the prompt and the length of the reply that
  follows it (in the model's tokens) is the output length, as common serving benchmarks take
  them (docs/serving.md, section 3, cites one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.config.jsonl import jsonl_records, text_of
from harness.errors import UserInputError

JSONL_FORMAT = ('one JSON object per line with a "prompt" string and optionally '
                '"output_tokens", e.g. {"prompt": "Hello", "output_tokens": 64}')
SHAREGPT_FORMAT = ('a JSON list of {"conversations": [{"from": "human", "value": ...}, '
                   '{"from": "gpt", "value": ...}]} (ShareGPT)')
#: ShareGPT's speaker names for the person and for the model
HUMAN = ("human", "user")
REPLY = ("gpt", "assistant", "chatgpt", "bard", "model")


@dataclass(frozen=True)
class FileRequest:
    """One request of a file: its prompt and its output length, or the reply that gives it."""

    prompt: str
    output_tokens: int | None = None
    reply: str | None = None


def _jsonl_record(record: Any, name: str, number: int) -> FileRequest | None:
    prompt = record.get("prompt") if isinstance(record, dict) else None
    if not isinstance(prompt, str):
        raise UserInputError(f"{name}: line {number}: no \"prompt\" string; expected {JSONL_FORMAT}")
    out = record.get("output_tokens")
    if out is not None and (not isinstance(out, int) or isinstance(out, bool) or out < 1):
        raise UserInputError(f"{name}: line {number}: \"output_tokens\" must be a whole number "
                             f"of at least 1, not {out!r}")
    return FileRequest(prompt, out) if prompt.strip() else None


def jsonl_requests(data: bytes, name: str) -> list[FileRequest]:
    """The requests of a JSONL file, in order; blank prompts are left out."""
    found = []
    for number, record in jsonl_records(data, name, JSONL_FORMAT):
        request = _jsonl_record(record, name, number)
        if request is not None:
            found.append(request)
    return found


def _first_exchange(turns: Any) -> FileRequest | None:
    """The first human turn and the reply after it, if the conversation has both."""
    if not isinstance(turns, list):
        return None
    for i, turn in enumerate(turns[:-1]):
        nxt = turns[i + 1]
        if not (isinstance(turn, dict) and isinstance(nxt, dict)):
            continue
        prompt, reply = turn.get("value"), nxt.get("value")
        if (turn.get("from") in HUMAN and nxt.get("from") in REPLY and isinstance(prompt, str)
                and isinstance(reply, str) and prompt.strip() and reply.strip()):
            return FileRequest(prompt, reply=reply)
    return None


def sharegpt_requests(data: bytes, name: str) -> list[FileRequest]:
    """The first exchange of every ShareGPT conversation that has one, in order."""
    try:
        records = json.loads(text_of(data, name))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{name}: not JSON ({e.msg} at line {e.lineno}); expected "
                             f"{SHAREGPT_FORMAT}") from e
    if not isinstance(records, list):
        raise UserInputError(f"{name}: expected {SHAREGPT_FORMAT}")
    found = []
    for record in records:
        turns = record.get("conversations") if isinstance(record, dict) else None
        request = _first_exchange(turns)
        if request is not None:
            found.append(request)
    return found


def file_requests(data: bytes, name: str) -> list[FileRequest]:
    """The requests of a file, by its kind (``.json``: ShareGPT; otherwise JSONL)."""
    return sharegpt_requests(data, name) if name.endswith(".json") else jsonl_requests(data, name)
