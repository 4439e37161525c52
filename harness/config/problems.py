"""Turn pydantic validation errors into one readable line per problem."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

_EXPECTED = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
}
#: what a field's regular expression means, for people
_PATTERNS = {
    r"^[0-9]+[bkmg]?$": "expected a whole number with an optional unit b, k, m or g (e.g. 512m, 16g)",
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$": (
        "expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
        "(it names folders and containers)"
    ),
}


def field_path(loc: Iterable[Any]) -> str:
    """Render a pydantic location tuple as a dotted path with [i] for list items."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def suggest(name: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a likely typo, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at the parent of ``loc`` in ``model``, best effort."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            return []
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = model_of(info.annotation)
    return list(getattr(current, "model_fields", {}) or [])


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_of(arg)
        if found is not None:
            return found
    return None


def describe(
    err: ValidationError, *, prefix: str = "", model: type[BaseModel] | None = None
) -> list[str]:
    """One line per problem: where, what is wrong, what was given."""
    lines = []
    for item in err.errors(include_url=False):
        loc = tuple(item["loc"])
        where = field_path(((prefix,) if prefix else ()) + loc)
        kind = item["type"]
        if kind == "extra_forbidden":
            hint = suggest(str(loc[-1]), _known_fields(model, loc)) if loc else ""
            lines.append(f"{where}: unknown field{hint}")
            continue
        msg = _EXPECTED.get(kind, item["msg"])
        ctx = item.get("ctx") or {}
        given = item.get("input")
        if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
            msg = _PATTERNS[ctx["pattern"]]
        nan = isinstance(given, float) and math.isnan(given)
        if nan:
            msg = "expected a number, got NaN"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind != "missing" and "input" in item and not isinstance(given, dict) and not nan:
            msg += f" (got {given!r})"
        if kind == "literal_error" and isinstance(given, str):
            msg += suggest(given, re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        if kind == "list_type" and not isinstance(given, (list, dict)):
            msg += f"; write [{given}] for a single value"
        lines.append(f"{where}: {msg}")
    return lines
