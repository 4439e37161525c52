"""JSONL files as the harness reads them: UTF-8, one JSON value per non-blank line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from harness.errors import UserInputError


def text_of(data: bytes, name: str) -> str:
    """A file's bytes as UTF-8 text, or UserInputError naming the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserInputError(f"{name}: is not UTF-8 text (byte {e.start}); save it as UTF-8") from e


def jsonl_records(data: bytes, name: str, expected: str) -> Iterator[tuple[int, Any]]:
    """(line number, JSON value) of every non-blank line of a UTF-8 JSONL file's bytes.

    UserInputError names the line that is not JSON and says what was ``expected``.
    """
    for number, line in enumerate(text_of(data, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserInputError(f"{name}: line {number}: not JSON ({e.msg}); expected "
                                 f"{expected}") from e
