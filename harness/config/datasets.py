"""Files a study names (prompt files now): which fields name one, where it is, what it holds.

Shared by the controller, which checks and hashes each file before anything starts, and the
agent, which reads it: both read a file by the same rules. A relative path is read from the
folder of the file that names it (the study or experiment file), never from the working
directory, so a study runs the same from anywhere. A new kind of file is one more entry in
``FIELDS``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.config.experiment import Experiment
from harness.config.jsonl import jsonl_records
from harness.config.request_files import file_requests
from harness.errors import UserInputError

#: where the docker runner mounts the files a run reads: /datasets/FIELD/NAME, read-only
CONTAINER_ROOT = "/datasets"
#: how a prompts file is written (the documentation's example)
PROMPTS_FORMAT = 'one JSON object per line with a "prompt" string, e.g. {"prompt": "Hello"}'


class DatasetFile(BaseModel):
    """A file a study names, as resolved on the host and read by the agent (in results)."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="the experiment field naming it, e.g. workload.dataset")
    source: str = Field(description="the value as the study wrote it")
    path: str = Field(description="the file on the host (relative paths: from the study file)")
    sha256: str
    agent_path: str | None = Field(default=None, description="where the agent read it")


@dataclass(frozen=True)
class DatasetField:
    """An experiment field that can name a file, and how such a file is checked."""

    path: str
    what: str
    #: what one record of the file is called
    records: str
    names_file: Callable[[str], bool]
    #: the field that says how many usable records an experiment needs from the file
    needed: str
    #: the usable records in the file's bytes (UserInputError naming the line when malformed)
    count: Callable[[bytes, str], int]


def prompt_texts(data: bytes, name: str) -> list[str]:
    """The prompts of a JSONL prompts file's bytes, in order; blank prompts are left out."""
    texts = []
    for number, record in jsonl_records(data, name, PROMPTS_FORMAT):
        prompt = record.get("prompt") if isinstance(record, dict) else None
        if not isinstance(prompt, str):
            raise UserInputError(f"{name}: line {number}: no \"prompt\" string; expected "
                                 f"{PROMPTS_FORMAT}")
        if prompt.strip():
            texts.append(prompt)
    return texts


FIELDS: tuple[DatasetField, ...] = (
    DatasetField(
        "workload.dataset", "prompts file", "prompts", names_file=lambda value: value != "synthetic",
        needed="workload.num_prompts",
        count=lambda data, name: len(prompt_texts(data, name)),
    ),
    DatasetField(  # serving mode (harness/config/request_files.py)
        "serving.dataset", "requests file", "requests", names_file=lambda value: value != "synthetic",
        needed="serving.num_requests",
        count=lambda data, name: len(file_requests(data, name)),
    ),
)


def field_of(path: str) -> DatasetField:
    """The dataset field at a dotted experiment path."""
    return next(f for f in FIELDS if f.path == path)


def value_at(exp: Experiment, path: str) -> object:
    """The value of an experiment's field at a dotted path (None where a level is missing)."""
    value: object = exp
    for part in path.split("."):
        value = getattr(value, part, None)
    return value


def named_files(exp: Experiment) -> list[tuple[DatasetField, str]]:
    """The files an experiment names: (field, the value as written), in FIELDS order."""
    found = []
    for field in FIELDS:
        value = value_at(exp, field.path)
        if isinstance(value, str) and field.names_file(value):
            found.append((field, value))
    return found


def resolve(value: str, base: Path) -> Path:
    """The absolute path of a file named by ``value`` (relative: from the folder ``base``)."""
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else Path(base).absolute() / path))


def read_file(path: Path, what: str, *, regular: bool = True) -> bytes:
    """The bytes of a file, or UserInputError saying what is wrong with it.

    ``regular``: refuse pipes, devices and sockets (reading one could hang, or consume what
    the run should read); the agent reads what the controller checked without asking again.
    """
    try:
        if path.is_dir():
            raise UserInputError(f"{path}: is a folder, expected a {what}")
        if regular and path.exists() and not path.is_file():
            raise UserInputError(f"{path}: is not a regular file (a pipe, device or socket); "
                                 f"a {what} must be one")
        return path.read_bytes()
    except FileNotFoundError as e:
        raise UserInputError(f"{path}: no such {what}") from e
    except OSError as e:
        raise UserInputError(f"{path}: cannot read the {what} ({e.strerror or e})") from e


def sha256_of(data: bytes) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def dataset_file(field: DatasetField, value: str, base: Path,
                 path: Path | None = None) -> tuple[DatasetFile, bytes]:
    """A file named by ``field: value``, resolved from ``base`` (or at ``path``), read, hashed."""
    path = path or resolve(value, base)
    data = read_file(path, field.what)
    return DatasetFile(field=field.path, source=value, path=str(path), sha256=sha256_of(data)), data


def content_problem(field: DatasetField, data: bytes, name: str, needed: int) -> str | None:
    """What is wrong with a file's content for an experiment that needs ``needed`` records."""
    try:
        usable = field.count(data, name)
    except UserInputError as e:
        return str(e)
    if usable < needed:
        return (f"{name}: has {usable} usable {field.records} (non-blank), the experiment "
                f"asks for {needed} ({field.needed}); add {field.records} or lower "
                f"{field.needed}")
    return None
