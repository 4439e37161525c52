"""Redacting a bundle's copy of a study folder by the one secrets policy (harness.secrets).

JSON files are redacted field by field and rewritten only when one held a secret; JSON Lines
line by line; other text files as text. Each redaction is listed in provenance/redactions.txt
by file and field (or line), never by value. A binary file that holds a secret-looking value
cannot be redacted safely, so the bundle is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from harness.bundle.layout import REDACTIONS, TEXT_SUFFIXES, list_files
from harness.errors import EnvironmentProblem, UserInputError
from harness.secrets import VALUE_PATTERNS, redact_json, redact_text

#: bytes read at a time when a binary file is searched; OVERLAP bytes are read again
CHUNK = 1 << 20
OVERLAP = 512


class Redaction(NamedTuple):
    """One value redacted from a bundle: the file and the field (or line) it stood in."""

    file: str
    field: str


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _redact_json_line(line: str, known: Sequence[str]) -> tuple[str, list[str]]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        new, found = redact_text(line, known)
        return new, [f.what for f in found]
    new_data, fields = redact_json(data, known)
    return (json.dumps(new_data, ensure_ascii=False) if fields else line), fields


def redact_content(suffix: str, text: str, known: Sequence[str] = ()) -> tuple[str, list[str]]:
    """A text file's content with its secrets redacted, and the field (or line) of each."""
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            pass
        else:
            new_data, fields = redact_json(data, known)
            return (_json_text(new_data) if fields else text), fields
    if suffix == ".jsonl":
        lines, fields = [], []
        for n, line in enumerate(text.split("\n"), start=1):
            new, found = _redact_json_line(line, known) if line.strip() else (line, [])
            lines.append(new)
            fields += [f"line {n}: {field}" for field in found]
        return "\n".join(lines), fields
    redacted, findings = redact_text(text, known)
    return redacted, [f"{f.what} (line {f.line})" for f in findings]


def binary_holds_secret(path: Path) -> str | None:
    """The kind of secret-looking value a binary file holds, read in chunks; None if none."""
    with path.open("rb") as fh:
        tail = ""
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            window = tail + chunk.decode("latin-1")
            for pattern in VALUE_PATTERNS:
                if pattern.regex.search(window):
                    return pattern.label
            tail = window[-OVERLAP:]
    return None


def _is_text(path: Path, data: bytes) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES and b"\x00" not in data


def _verbatim_problem(root: Path, rel: str, known: Sequence[str]) -> str | None:
    """Why a file carried as it is cannot be bundled (a text file holding a secret), or None."""
    path = root / rel
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return None  # an image or source archive: compressed data, carried as saved
    data = path.read_bytes()
    if not _is_text(path, data):
        return None
    fields = redact_content(path.suffix.lower(), data.decode("utf-8", "replace"), known)[1]
    if not fields:
        return None
    return (f"{rel}: carried as the runs read it, so it cannot be redacted, but holds "
            f"secret-looking values ({', '.join(sorted(set(fields))[:3])})")


def redact_tree(root: Path, known: Sequence[str] = (),
                verbatim: tuple[str, ...] = ()) -> list[Redaction]:
    """Redact every text file under root in place; refuse when a binary file holds a secret.

    Files under the ``verbatim`` folders are carried unchanged: not redacted, and refused
    when they are text that holds a secret.
    """
    redactions: list[Redaction] = []
    refused: list[str] = []
    for rel in list_files(root):
        path = root / rel
        suffix = path.suffix.lower()
        if rel.startswith(verbatim):
            problem = _verbatim_problem(root, rel, known)
            refused += [problem] if problem else []
            continue
        if suffix == ".parquet":
            found = redact_text(pd.read_parquet(path).to_csv(index=False), known)[1]
            if found:
                refused.append(f"{rel}: holds {', '.join(sorted({f.what for f in found}))}")
            continue
        if suffix not in TEXT_SUFFIXES:
            kind = binary_holds_secret(path)
            if kind:
                refused.append(f"{rel}: holds a {kind} in binary data")
            continue
        data = path.read_bytes()
        if not _is_text(path, data):
            kind = binary_holds_secret(path)
            if kind:
                refused.append(f"{rel}: holds a {kind} in binary data")
            continue
        new, fields = redact_content(suffix, data.decode("utf-8", "replace"), known)
        if fields:
            path.write_text(new, encoding="utf-8")
            redactions += [Redaction(rel, field) for field in fields]
    if refused:
        raise UserInputError(
            "refusing to bundle: files hold secret-looking values that cannot be redacted; "
            "remove them from the study folder (or the prompt files) first", problems=refused,
        )
    return redactions


def check_redacted(root: Path, known: Sequence[str] = (),
                   verbatim: tuple[str, ...] = ()) -> None:
    """Raise when a text file under root still holds a secret (a redaction that did not hold)."""
    leftover = []
    for rel in list_files(root):
        if verbatim and rel.startswith(verbatim):
            continue  # checked by redact_tree: carried only when it holds none
        path = root / rel
        data = path.read_bytes()
        if _is_text(path, data):
            fields = redact_content(path.suffix.lower(), data.decode("utf-8", "replace"),
                                    known)[1]
            if fields:
                leftover.append(f"{rel}: {', '.join(fields)}")
    if leftover:  # a bug in the policy; never ship it
        raise EnvironmentProblem("secret-looking values survived redaction: " + "; ".join(leftover))


def write_redactions(root: Path, redactions: list[Redaction]) -> None:
    """Write provenance/redactions.txt: one line per redacted value (file, tab, field)."""
    lines = "".join(f"{r.file}\t{r.field}\n" for r in redactions)
    (root / REDACTIONS).write_text(
        "# values redacted when this bundle was made: file, tab, field or line; no values kept\n"
        + lines, encoding="utf-8")
