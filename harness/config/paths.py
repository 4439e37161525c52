"""Dotted paths into experiment configs: read, write, deep-merge, check, backend scope."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from harness.backends import registry
from harness.config.experiment import Experiment
from harness.config.problems import model_of, suggest


def get_path(data: Any, path: str) -> Any:
    """Read a dotted path from nested dicts; None where a level is missing or null."""
    return get_parts(data, path.split("."))


def get_parts(data: Any, parts: Sequence[str]) -> Any:
    """``get_path`` with the path already split at its dots."""
    for part in parts:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Write a dotted path into nested dicts, creating levels as needed."""
    parts = path.split(".")
    for part in parts[:-1]:
        nxt = data.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            data[part] = nxt
        data = nxt
    data[parts[-1]] = value


def copied(value: Any) -> Any:
    """``value``, copied where it is a container (so that writing into it changes no original)."""
    return copy.deepcopy(value) if isinstance(value, dict | list) else value


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` (nested dicts or dotted keys) over a copy of ``base``."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        current = get_path(out, key)
        if isinstance(value, dict) and isinstance(current, dict):
            set_path(out, key, merge(current, value))
        else:
            set_path(out, key, copy.deepcopy(value))
    return out


def check_path(path: str) -> str | None:
    """Why a dotted path does not name an experiment field, or None if it does."""
    model: Any = Experiment
    walked: list[str] = []
    for part in path.split("."):
        fields = getattr(model, "model_fields", None)
        if not fields:
            return f"{'.'.join(walked)} has no sub-fields"
        if part not in fields:
            return f"unknown field {part!r}{suggest(part, fields)}"
        walked.append(part)
        model = model_of(fields[part].annotation)
    return None


def scope_of(path: str) -> str | None:
    """The backend an axis is scoped to (its first segment names one), or None."""
    head = path.split(".", 1)[0]
    return head if head in registry.names() else None
