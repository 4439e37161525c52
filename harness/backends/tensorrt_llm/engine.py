"""TensorRT-LLM engine on its LLM API, with a host-mounted cache of built engines.

Two runtimes, chosen by ``tensorrt_llm.runtime``:
  tensorrt  the TensorRT engine path (``tensorrt_llm._tensorrt_engine.LLM`` since 1.0, plain
            ``tensorrt_llm.LLM`` before): the engine is built from the Hugging Face checkpoint
            with the options' build and quantization configuration, saved into the engine
            cache (the spec's ``cache_mount``, a host folder) under a key naming everything
            the engine depends on, and reused by later runs with the same key;
  pytorch   ``tensorrt_llm.LLM``, TensorRT-LLM's PyTorch runtime: nothing is built or cached.
Engine build and start happen in ``load``, timed apart from the measured window.

Requests are streamed (``generate_async(..., streaming=True)``) and every token is timed when
it reaches the agent. With tensor or pipeline parallelism on one node the LLM API starts its own
MPI workers (one per GPU); the agent stays the only process the container starts.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

from harness.agent import activity
from harness.backends import weights
from harness.backends.engine import Engine, RequestTiming, torch_build_info
from harness.backends.tensorrt_llm import SPEC
from harness.backends.tensorrt_llm.mapping import (
    engine_cache_dir,
    engine_key,
    has_engine,
    instantiate,
    llm_args,
    model_fingerprint,
    options_of,
    sampling_args,
    world_size,
)
from harness.config.experiment import Experiment
from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason


class TensorrtLlmEngine(Engine):
    """TensorRT-LLM's LLM API on NVIDIA GPUs; prompts go in as token ids, tokens are streamed."""

    spec = SPEC

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self._llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info: dict[str, Any] = {}
        self._config: dict[str, Any] = {}
        self._counts: tuple[int, int] | None = None

    def load(self, model_path: str) -> None:
        """Reuse a cached engine or build (and cache) one, then start the executor."""
        # MPI ranks in one container without ptrace (every capability is dropped)
        os.environ.setdefault("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        try:
            import tensorrt_llm
            import torch
            from tensorrt_llm import llmapi
        except ImportError as e:
            raise EnvironmentProblem(f"TensorRT-LLM is not installed: {e}") from e
        if not torch.cuda.is_available():
            raise EnvironmentProblem("TensorRT-LLM needs an NVIDIA GPU, and torch sees none")
        self._trtllm = tensorrt_llm
        opts = options_of(self.experiment)
        model_dir = weights.find_model(model_path)
        self.refuse_unfit_model(model_dir)
        self._config = weights.model_config(model_dir)
        self._counts = weights.parameter_counts(model_dir)
        args = llm_args(self.experiment, str(model_dir))
        version = str(getattr(tensorrt_llm, "__version__", "unknown"))
        self._info = {
            "engine": "tensorrt_llm",
            "engine_version": version,
            "tensorrt_llm": version,
            "torch": torch.__version__,
            "runtime": opts.runtime,
            "llm_args": {k: v for k, v in args.items() if k not in ("model", "tokenizer")},
            "world_size": world_size(opts),
            "gpu": torch.cuda.get_device_name(0),
            "token_timing": "streamed outputs, timestamped when handed to the agent",
            "num_layers": self._config.get("num_hidden_layers"),
            "hidden_size": self._config.get("hidden_size"),
        }
        try:
            if opts.runtime == "pytorch":
                self._start(tensorrt_llm.LLM, args, llmapi, "engine_start_s")
            else:
                self._load_engine(args, llmapi, model_dir, version)
        except (OSError, ValueError, RuntimeError) as e:
            raise RunFailure(
                f"TensorRT-LLM could not build or start the engine: {e}",
                reason=FailureReason.ENGINE_START_FAILED,
            ) from e
        self._tokenizer = self._llm.tokenizer
        self._loop = asyncio.new_event_loop()

    def _trt_llm_class(self) -> Any:
        try:
            from tensorrt_llm._tensorrt_engine import LLM  # 1.0+: the TensorRT engine path
        except ImportError:
            from tensorrt_llm import LLM  # before 1.0 the default LLM built TensorRT engines
        return LLM

    def _start(self, cls: Any, args: dict[str, Any], llmapi: Any, timing: str) -> None:
        t0 = time.perf_counter()
        self._llm = cls(**instantiate(args, llmapi))
        self._info[timing] = time.perf_counter() - t0

    def _load_engine(self, args: dict[str, Any], llmapi: Any, model_dir: Path, version: str) -> None:
        cls = self._trt_llm_class()
        key = engine_key(
            self.experiment, self._config.get("_name_or_path") or model_dir.name,
            model_fingerprint(model_dir), version, self._info["gpu"],
        )
        cache = engine_cache_dir()
        engine_dir = cache / key
        self._info.update(engine_cache=str(cache), engine_key=key)
        if has_engine(engine_dir):
            reuse = dict(args, model=str(engine_dir))
            reuse.pop("build_config", None)  # fixed when the engine was built
            reuse.pop("quant_config", None)
            self._start(cls, reuse, llmapi, "engine_load_s")
            self._info["engine_reused"] = True
            return
        # The LLM API builds the engine and starts its executor in one call.
        self._start(cls, args, llmapi, "engine_build_s")
        self._info["engine_reused"] = False
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{key}.partial-{os.getpid()}"
        t0 = time.perf_counter()
        try:
            self._llm.save(str(tmp))
            os.replace(tmp, engine_dir)
            self._info["engine_save_s"] = time.perf_counter() - t0
        except OSError as e:  # another run saved it first, or the cache is read-only
            shutil.rmtree(tmp, ignore_errors=True)
            self._info["engine_save_error"] = str(e)

    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size (tokenizer and model agree) and special token ids."""
        tok = getattr(self._tokenizer, "tokenizer", self._tokenizer)  # TransformersTokenizer wraps one
        size = len(tok)
        model_vocab = self._config.get("vocab_size")
        if isinstance(model_vocab, int):
            size = min(size, model_vocab)
        return size, list(getattr(tok, "all_special_ids", []))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        """Submit the batch at once and stream every request to its end."""
        params = self._trtllm.SamplingParams(**sampling_args(self.experiment.decoding, max_new_tokens))
        assert self._loop is not None
        start = time.perf_counter()
        activity.publish(activity.Activity.PREFILL)
        try:
            streams = self._loop.run_until_complete(self._stream_all(prompts, params))
        finally:
            activity.publish(activity.Activity.LOADED_IDLE)
        timings = []
        for i, (prompt, (times, end)) in enumerate(zip(prompts, streams, strict=True)):
            if len(times) != max_new_tokens:
                raise RunFailure(
                    f"request {i} generated {len(times)} tokens, expected {max_new_tokens}",
                    reason=FailureReason.TOKEN_COUNT_MISMATCH,
                )
            timings.append(RequestTiming(len(prompt), len(times), start, end, times))
        return timings

    async def _stream_all(
        self, prompts: list[list[int]], params: Any
    ) -> list[tuple[list[float], float]]:
        return list(await asyncio.gather(*(self._stream(p, params) for p in prompts)))

    async def _stream(self, prompt: list[int], params: Any) -> tuple[list[float], float]:
        times: list[float] = []
        async for out in self._llm.generate_async(prompt, params, streaming=True):
            now = time.perf_counter()
            new = len(out.outputs[0].token_ids) - len(times)  # token_ids are cumulative
            times.extend([now] * new)
            if times:
                activity.publish(activity.Activity.DECODE)  # the first streamed output
        return times, time.perf_counter()

    def synchronize(self) -> None:
        """Wait for queued CUDA work of this process (the executor syncs its own)."""
        import torch

        torch.cuda.synchronize()

    def unload(self) -> None:
        """Shut the executor (and MPI workers) down."""
        llm, self._llm = self._llm, None
        if llm is not None:
            try:
                llm.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the container ends anyway
                pass
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def info(self) -> dict[str, Any]:
        """Versions, runtime, LLM API arguments, engine cache key and build/load timings."""
        return dict(self._info)

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        """TensorRT-LLM and TensorRT as installed, and the torch and CUDA they run on."""
        import tensorrt_llm

        version = str(getattr(tensorrt_llm, "__version__", "unknown"))
        try:
            import tensorrt

            trt_version: str | None = tensorrt.__version__
        except ImportError:
            trt_version = None
        return {"engine": "tensorrt_llm", "engine_version": version, "tensorrt_llm": version,
                "tensorrt": trt_version, **torch_build_info()}

    def parameter_counts(self) -> tuple[int, int] | None:
        """Total and input-embedding parameters, from the checkpoint's safetensors headers."""
        return self._counts


