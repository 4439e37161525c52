"""What an experiment id hashes: the canonical JSON text of a resolved config, and the hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

#: sorted keys, no whitespace, ASCII only (made once: building an encoder per call is slow)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_text(data: Mapping[str, Any], known: Mapping[str, str] | None = None) -> str:
    """``data`` (a JSON-mode dump) as JSON with sorted keys and no whitespace.

    ``known`` maps some top-level keys to their values' canonical text, made once for a value
    that many experiments share; the text is the same as without it, only made faster.
    """
    if not known:
        return _ENCODER.encode(data)
    parts = [
        f"{encode_basestring_ascii(key)}:{known[key] if key in known else _scalar(data[key])}"
        for key in sorted(data)
    ]
    return "{" + ",".join(parts) + "}"


def _scalar(value: Any) -> str:
    """One value as the encoder writes it (common scalars without starting the encoder)."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if type(value) is int:
        return int.__repr__(value)
    return _ENCODER.encode(value)


def id_of(text: str) -> str:
    """The id of a canonical text: the first 10 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]
