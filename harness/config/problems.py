"""Turn pydantic validation errors into one readable line per problem."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

_EXPECTED = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
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
        current = _model_of(info.annotation)
    return list(getattr(current, "model_fields", {}) or [])


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
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
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if kind != "missing" and "input" in item and not isinstance(item["input"], dict):
            msg += f" (got {item['input']!r})"
        lines.append(f"{where}: {msg}")
    return lines
