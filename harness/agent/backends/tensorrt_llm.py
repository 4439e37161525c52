"""TensorRT-LLM backend on its LLM API, with a host-mounted cache of built engines.

Two runtimes, chosen by ``tensorrt_llm.runtime``:
  tensorrt  the TensorRT engine path (``tensorrt_llm._tensorrt_engine.LLM`` since 1.0, plain
            ``tensorrt_llm.LLM`` before): the engine is built from the Hugging Face checkpoint
            with the options' build and quantization configuration, saved into the engine
            cache (``BackendSpec.cache_mount``, a host folder) under a key naming everything
            the engine depends on, and reused by later runs with the same key;
  pytorch   ``tensorrt_llm.LLM``, TensorRT-LLM's PyTorch runtime: nothing is built or cached.
Engine build and start happen in ``load``, timed apart from the measured window.

Requests are streamed (``generate_async(..., streaming=True)``) and every token is timed when
it reaches the agent. Tensor and pipeline parallelism (world size > 1) run under TensorRT-LLM's
launcher: the image's entry point is ``python -m harness.agent.backends.tensorrt_llm``, which
reads the run spec and starts the agent as ``mpirun -n WORLD trtllm-llmapi-launch python -m
harness.agent ...`` (rank 0 runs the agent, the other ranks serve as engine workers).

This module imports without TensorRT-LLM; the option mapping is pure and unit-tested.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from harness.agent.backends import weights
from harness.agent.backends.base import Backend, RequestTiming
from harness.config.backends import BACKENDS, TensorrtLlmOptions, cache_root
from harness.config.experiment import Decoding, Experiment
from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason

NAME = "tensorrt_llm"
#: the options' quantization -> TensorRT-LLM's QuantAlgo member name
QUANT_ALGOS = {
    "fp8": "FP8",
    "int8_weight_only": "W8A16",
    "int4_weight_only": "W4A16",
    "int4_awq": "W4A16_AWQ",
}
#: unquantized precision -> dtype; quantized precisions keep the checkpoint's activation dtype
DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
LAUNCHER = ("mpirun", "--allow-run-as-root", "--oversubscribe")
AGENT = ("python", "-m", "harness.agent")
ENGINE_FILES = "rank*.engine"


def _options(experiment: Experiment) -> TensorrtLlmOptions:
    opts = experiment.options
    assert isinstance(opts, TensorrtLlmOptions)
    return opts


def world_size(opts: TensorrtLlmOptions) -> int:
    """Processes (GPUs) one engine spans: tensor x pipeline parallel size."""
    return opts.tensor_parallel_size * opts.pipeline_parallel_size


def quant_config(experiment: Experiment) -> dict[str, str] | None:
    """QuantConfig fields (QuantAlgo member names), or None when nothing is quantized."""
    opts = _options(experiment)
    scheme = BACKENDS[NAME].quantization_scheme(experiment.precision, opts.quantization)
    fields: dict[str, str] = {}
    if scheme is not None:
        fields["quant_algo"] = QUANT_ALGOS[scheme]
    if opts.kv_cache_dtype == "fp8":
        fields["kv_cache_quant_algo"] = "FP8"
    return fields or None


def build_config(opts: TensorrtLlmOptions) -> dict[str, int]:
    """BuildConfig fields: the engine's batch and sequence limits."""
    fields = {"max_batch_size": opts.max_batch_size}
    if opts.max_num_tokens is not None:
        fields["max_num_tokens"] = opts.max_num_tokens
    if opts.max_seq_len is not None:
        fields["max_seq_len"] = opts.max_seq_len
    return fields


def kv_cache_config(opts: TensorrtLlmOptions) -> dict[str, Any]:
    """KvCacheConfig fields."""
    fields: dict[str, Any] = {
        "free_gpu_memory_fraction": opts.kv_cache_free_gpu_memory_fraction,
        "enable_block_reuse": opts.enable_block_reuse,
    }
    if opts.runtime == "pytorch" and opts.kv_cache_dtype != "auto":
        fields["dtype"] = opts.kv_cache_dtype  # the TensorRT path quantizes it via QuantConfig
    return fields


def llm_args(experiment: Experiment, model_path: str) -> dict[str, Any]:
    """Arguments of the LLM API for this experiment, config objects as plain dicts (pure).

    The keys ``build_config``, ``kv_cache_config`` and ``quant_config`` hold the fields of
    TensorRT-LLM's BuildConfig, KvCacheConfig and QuantConfig; ``instantiate`` makes them.
    """
    opts = _options(experiment)
    args: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": DTYPES.get(experiment.precision, "auto"),
        "tensor_parallel_size": opts.tensor_parallel_size,
        "pipeline_parallel_size": opts.pipeline_parallel_size,
        "kv_cache_config": kv_cache_config(opts),
    }
    if opts.runtime == "tensorrt":
        args["build_config"] = build_config(opts)
        quant = quant_config(experiment)
        if quant is not None:
            args["quant_config"] = quant
    else:
        args.update(build_config(opts))  # the PyTorch runtime takes the limits directly
    return args


def sampling_args(decoding: Decoding, max_new_tokens: int) -> dict[str, Any]:
    """Arguments of ``tensorrt_llm.SamplingParams``: exactly ``max_new_tokens``, EOS ignored."""
    args: dict[str, Any] = {
        "max_tokens": max_new_tokens,
        "min_tokens": max_new_tokens,
        "ignore_eos": True,
        "detokenize": False,
        "n": 1,
    }
    if decoding.temperature > 0:
        args.update(temperature=decoding.temperature, top_p=decoding.top_p)
        if decoding.top_k > 0:
            args["top_k"] = decoding.top_k
    else:
        args["top_k"] = 1  # greedy in both runtimes
    return args


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:48] or "model"


def engine_key(
    experiment: Experiment, model_name: str, model_fingerprint: str, version: str, gpu: str
) -> str:
    """Folder name of a built engine: everything the engine depends on, readable plus a hash.

    Model (name and a fingerprint of its files), precision and quantization, parallelism,
    batch and sequence limits, the TensorRT-LLM version and the GPU model all change the
    engine; a change in any of them gives another key.
    """
    opts = _options(experiment)
    args = llm_args(experiment, "")
    depends = {
        "model": model_fingerprint,
        "precision": experiment.precision,
        "args": {k: v for k, v in args.items() if k not in ("model", "tokenizer", "kv_cache_config")},
        "block_reuse": opts.enable_block_reuse,  # the KV-cache memory share is a runtime setting
        "tensorrt_llm": version,
        "gpu": gpu,
    }
    digest = hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:12]
    seq = opts.max_seq_len if opts.max_seq_len is not None else "auto"
    return (
        f"{_slug(model_name)}-{experiment.precision}-tp{opts.tensor_parallel_size}"
        f"pp{opts.pipeline_parallel_size}-b{opts.max_batch_size}-s{seq}-"
        f"trtllm{_slug(version)}-{digest}"
    )


def model_fingerprint(model_dir: Path) -> str:
    """A hash of the checkpoint's config.json and its files' names and sizes."""
    digest = hashlib.sha256()
    config = model_dir / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def engine_cache_dir() -> Path:
    """The engine cache: the mounted folder in a container, else the host user's cache."""
    mount = BACKENDS[NAME].cache_mount
    if mount and Path(mount).is_dir() and os.access(mount, os.W_OK):
        return Path(mount)
    return cache_root() / NAME


def has_engine(path: Path) -> bool:
    """True when ``path`` holds a saved engine (config.json and rank engines)."""
    return (path / "config.json").is_file() and any(path.glob(ENGINE_FILES))


def launch_command(world: int, agent_args: list[str]) -> list[str]:
    """The agent's command line: plain for one process, under the MPI launcher for more."""
    if world <= 1:
        return [*AGENT, *agent_args]
    return [*LAUNCHER, "-n", str(world), "trtllm-llmapi-launch", *AGENT, *agent_args]


def _world_of_config(path: Path) -> int:
    """World size from a run spec or experiment file (JSON or YAML); 1 when unreadable."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        exp = data.get("experiment", data)
        opts = exp.get(NAME) or {}
        return int(opts.get("tensor_parallel_size", 1)) * int(opts.get("pipeline_parallel_size", 1))
    except (OSError, ValueError, AttributeError, TypeError, yaml.YAMLError):
        return 1  # the agent itself reports the unreadable config


def instantiate(args: dict[str, Any], llmapi: Any) -> dict[str, Any]:
    """Replace the plain config dicts in ``args`` by TensorRT-LLM's config objects."""
    out = dict(args)
    if "build_config" in out:
        out["build_config"] = llmapi.BuildConfig(**out["build_config"])
    out["kv_cache_config"] = llmapi.KvCacheConfig(**out["kv_cache_config"])
    if "quant_config" in out:
        fields = {k: getattr(llmapi.QuantAlgo, v) for k, v in out["quant_config"].items()}
        out["quant_config"] = llmapi.QuantConfig(**fields)
    return out


class TensorrtLlmBackend(Backend):
    """TensorRT-LLM's LLM API on NVIDIA GPUs; prompts go in as token ids, tokens are streamed."""

    per_token_timestamps: ClassVar[bool] = True
    prefill_only_pass: ClassVar[bool] = True

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self._llm: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info: dict[str, Any] = {}
        self._config: dict[str, Any] = {}
        self._counts: tuple[int, int] | None = None

    def load(self, model_path: str) -> None:
        """Reuse a cached engine or build (and cache) one, then start the executor."""
        try:
            import tensorrt_llm
            import torch
            from tensorrt_llm import llmapi
        except ImportError as e:
            raise EnvironmentProblem(f"TensorRT-LLM is not installed: {e}") from e
        if not torch.cuda.is_available():
            raise EnvironmentProblem("TensorRT-LLM needs an NVIDIA GPU, and torch sees none")
        self._trtllm = tensorrt_llm
        opts = _options(self.experiment)
        model_dir = weights.local_model_dir(model_path)
        if model_dir is None:
            raise RunFailure(
                f"model {model_path!r} is neither a folder nor in the local Hugging Face cache",
                reason=FailureReason.MODEL_NOT_FOUND,
            )
        self._config = weights.model_config(model_dir)
        self._counts = weights.parameter_counts(model_dir)
        args = llm_args(self.experiment, str(model_dir))
        version = str(getattr(tensorrt_llm, "__version__", "unknown"))
        self._info = {
            "engine": "tensorrt_llm",
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
        streams = self._loop.run_until_complete(self._stream_all(prompts, params))
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

    def parameter_counts(self) -> tuple[int, int] | None:
        """Total and input-embedding parameters, from the checkpoint's safetensors headers."""
        return self._counts


def main(argv: list[str] | None = None) -> int:
    """Image entry point: run the agent, under the MPI launcher when the engine spans GPUs."""
    args = list(sys.argv[1:] if argv is None else argv)
    config = Path("/results/config.json")
    for flag in ("--config", "--experiment"):
        if flag in args and args.index(flag) + 1 < len(args):
            config = Path(args[args.index(flag) + 1])
    command = launch_command(_world_of_config(config), args)
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
