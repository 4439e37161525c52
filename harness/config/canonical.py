"""What an experiment id hashes: the canonical JSON text of a resolved config, and the hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

#: sorted keys, no whitespace, ASCII only (made once: building an encoder per call is slow)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def canonical_text(
    data: Mapping[str, Any],
    known: Mapping[str, str] | None = None,
    omit: Collection[str] = (),
) -> str:
    """``data`` (a JSON-mode dump) as JSON with sorted keys and no whitespace.

    ``known`` maps some top-level keys to their values' canonical text, made once for a value
    that many experiments share; the text is the same as without it, only made faster.
    Top-level keys in ``omit`` are left out (``data`` itself is never changed).
    """
    if not known:
        return _ENCODER.encode({k: v for k, v in data.items() if k not in omit} if omit else data)
    parts = []
    for key in sorted(data):
        if key in omit:
            continue
        text = known.get(key)
        if text is None:
            value = data[key]
            if value is None:
                text = "null"
            elif type(value) is str:
                text = encode_basestring_ascii(value)
            elif type(value) is int:
                text = int.__repr__(value)
            else:  # the encoder for anything else (floats, booleans, containers)
                text = _ENCODER.encode(value)
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    return "{" + ",".join(parts) + "}"


def id_of(text: str) -> str:
    """The id of a canonical text: the first 10 hex digits of its SHA-256."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]
