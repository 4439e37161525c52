"""The toy backend's engine: deterministic tokens, a fixed pause per decoding step."""

import json
import time
import zlib
from pathlib import Path
from typing import Any

from harness.backends.engine import Engine, RequestTiming
from toy_backend import SPEC, ToyOptions


class ToyEngine(Engine):
    """Reads the vocabulary size from the model folder's config.json; sleeps per step."""

    spec = SPEC

    def load(self, model_path: str) -> None:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
        self.vocab_size = int(config["vocab_size"])
        options = self.experiment.options
        assert isinstance(options, ToyOptions)
        self.step_s = options.step_ms / 1000

    def vocab(self) -> tuple[int, list[int]]:
        return self.vocab_size, [0]

    def encode(self, text: str) -> list[int]:
        return [1 + zlib.crc32(word.encode()) % (self.vocab_size - 1) for word in text.split()]

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        start = time.perf_counter()
        times = []
        for _ in range(max_new_tokens):
            time.sleep(self.step_s)
            times.append(time.perf_counter())
        return [RequestTiming(len(p), max_new_tokens, start, times[-1], list(times)) for p in prompts]

    def info(self) -> dict[str, Any]:
        return {"engine": "toy", "engine_version": "0.1", "step_s": self.step_s}
