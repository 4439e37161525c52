"""What an experiment id hashes: the canonical JSON text of a resolved config, and the hash.

Canonical JSON: keys sorted, no whitespace, ASCII only. An object's text is built from its
members' texts (``member_text``, joined by ``object_text``), so a member that many experiments
share is encoded once and its text reused: the text is the same either way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

#: sorted keys, no whitespace, ASCII only (made once: building an encoder per call is slow)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def value_text(value: Any) -> str:
    """A JSON-mode value (a dump's part) as canonical JSON."""
    if value is None:
        return "null"
    if type(value) is str:
        return encode_basestring_ascii(value)
    if type(value) is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)  # floats, booleans, containers


def member_text(key: str, value_json: str) -> str:
    """One member of an object's canonical JSON: the key and its value's text."""
    return f"{encode_basestring_ascii(key)}:{value_json}"


def object_text(members: Iterable[str]) -> str:
    """An object's canonical JSON from its members' texts in sorted key order ('' left out)."""
    return "{" + ",".join(filter(None, members)) + "}"


def id_of(text: str) -> str:
    """The id of a canonical text: the first 10 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]
