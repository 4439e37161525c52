"""TensorRT-LLM's arguments for an experiment, as plain data (pure; no TensorRT-LLM needed).

The LLM API takes BuildConfig, KvCacheConfig and QuantConfig objects; here they are dicts of
their fields, so the mapping is unit-tested without the engine, and ``instantiate`` turns them
into TensorRT-LLM's objects inside the image. The engine cache key names everything a built
engine depends on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from harness.backends.cache import backend_cache
from harness.backends.sampling import exact_length
from harness.backends.tensorrt_llm import SPEC
from harness.backends.tensorrt_llm.options import QUANT_ALGOS, TensorrtLlmOptions
from harness.config.experiment import Decoding, Experiment

#: unquantized precision -> dtype; quantized precisions keep the checkpoint's activation dtype
DTYPES = {"fp16": "float16", "bf16": "bfloat16"}
ENGINE_FILES = "rank*.engine"


def options_of(experiment: Experiment) -> TensorrtLlmOptions:
    """The experiment's TensorRT-LLM options, defaults filled in."""
    opts = experiment.options
    assert isinstance(opts, TensorrtLlmOptions)
    return opts


def world_size(opts: TensorrtLlmOptions) -> int:
    """Processes (GPUs) one engine spans: tensor x pipeline parallel size."""
    return opts.tensor_parallel_size * opts.pipeline_parallel_size


def quant_config(experiment: Experiment) -> dict[str, str] | None:
    """QuantConfig fields (QuantAlgo member names), or None when nothing is quantized."""
    opts = options_of(experiment)
    scheme = SPEC.quantization_scheme(experiment.precision, opts.quantization)
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
    opts = options_of(experiment)
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
    return exact_length(decoding, max_new_tokens, {"top_k": 1})  # greedy in both runtimes


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
    opts = options_of(experiment)
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
    mount = SPEC.cache_mount
    if mount and Path(mount).is_dir() and os.access(mount, os.W_OK):
        return Path(mount)
    return backend_cache(SPEC.name)


def has_engine(path: Path) -> bool:
    """True when ``path`` holds a saved engine (config.json and rank engines)."""
    return (path / "config.json").is_file() and any(path.glob(ENGINE_FILES))


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


