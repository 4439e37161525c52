"""The requests' token ids: the model's tokenizer, synthetic prompts or a requests file's.

The server is sent token ids, so prompt lengths are exact and every engine gets the same
prompts; the tokenizer is the model's own (transformers' ``AutoTokenizer``, which the images of
the engines that serve ship), read in the agent before the load.
"""

from __future__ import annotations

from typing import Any

from harness.agent.serving.requests import (
    PlannedRequest,
    file_request_tokens,
    plan_requests,
    synthetic_requests,
)
from harness.agent.workload import dataset_for, read_checked
from harness.backends import weights
from harness.config.request_files import FileRequest, file_requests
from harness.errors import EnvironmentProblem, UserInputError
from harness.results.schema import RunSpec

FIELD = "serving.dataset"


def read_requests_file(spec: RunSpec) -> tuple[list[FileRequest], str] | None:
    """The requests file's records and its path, checked before anything starts (None: synthetic)."""
    if spec.experiment.serving.dataset == "synthetic":
        return None
    data, path = read_checked(dataset_for(spec, FIELD), "requests file")
    records = file_requests(data, str(path))
    if len(records) < spec.experiment.serving.num_requests:
        raise UserInputError(f"{path}: has {len(records)} usable requests, the experiment asks "
                             f"for {spec.experiment.serving.num_requests}")
    return records, str(path)


class Tokenizer:
    """The model's tokenizer: its ordinary vocabulary and text encoding."""

    def __init__(self, model_path: str) -> None:
        model_dir = weights.find_model(model_path)
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise EnvironmentProblem(f"transformers is not installed: {e}") from e
        self._tok: Any = AutoTokenizer.from_pretrained(str(model_dir))
        self._config = weights.model_config(model_dir)

    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size (tokenizer and model agree) and the special token ids."""
        size = len(self._tok)
        model_vocab = self._config.get("vocab_size")
        if isinstance(model_vocab, int):
            size = min(size, model_vocab)
        return size, list(getattr(self._tok, "all_special_ids", []))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False))


def planned_requests(spec: RunSpec, tokenizer: Tokenizer,
                     file: tuple[list[FileRequest], str] | None) -> list[PlannedRequest]:
    """The run's requests with their send times."""
    exp = spec.experiment
    if file is None:
        pairs = synthetic_requests(exp, *tokenizer.vocab())
    else:
        pairs = file_request_tokens(exp, file[0], tokenizer.encode, file[1])
    return plan_requests(exp, pairs)
