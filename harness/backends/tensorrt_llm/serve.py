"""TensorRT-LLM's OpenAI-compatible server in serving mode: ``trtllm-serve``'s command line.

The limits that ``trtllm-serve`` takes as flags (runtime, parallelism, batch and sequence
limits) are flags; everything else the offline engine sets through the LLM API (KV-cache
configuration, dtype, quantization) goes into the file of extra LLM API options that
``--extra_llm_api_options`` reads, written from the same mapping (``mapping.llm_args``) so that
both modes configure the engine alike. The TensorRT runtime builds its engine as the server
starts; the offline engine cache is not used in serving mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from harness.backends import weights
from harness.backends.spec import ServerLaunch

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

#: the file of extra LLM API options, written into the server's folder
EXTRA_OPTIONS = "extra-llm-api-options.yaml"
#: MPI ranks in one container without ptrace (every capability is dropped), as offline
SERVER_ENV = {"OMPI_MCA_btl_vader_single_copy_mechanism": "none"}


def extra_options(experiment: Experiment, model_path: str) -> dict[str, object]:
    """The LLM API options that have no ``trtllm-serve`` flag (YAML's JSON subset)."""
    from harness.backends.tensorrt_llm.mapping import llm_args  # mapping imports this SPEC

    args = llm_args(experiment, model_path)
    keep = ("dtype", "kv_cache_config", "quant_config")
    return {k: v for k, v in args.items() if k in keep}


def serve_command(experiment: Experiment, model_path: str, port: int, folder: Path) -> list[str]:
    """``trtllm-serve``'s command line for this experiment on loopback ``port`` (pure)."""
    from harness.backends.tensorrt_llm.mapping import options_of

    opts = options_of(experiment)
    argv = [
        "trtllm-serve", model_path, "--host", "127.0.0.1", "--port", str(port),
        "--backend", opts.runtime,
        "--tp_size", str(opts.tensor_parallel_size), "--pp_size", str(opts.pipeline_parallel_size),
        "--max_batch_size", str(opts.max_batch_size),
        "--kv_cache_free_gpu_memory_fraction", str(opts.kv_cache_free_gpu_memory_fraction),
    ]
    if opts.max_num_tokens is not None:
        argv += ["--max_num_tokens", str(opts.max_num_tokens)]
    if opts.max_seq_len is not None:
        argv += ["--max_seq_len", str(opts.max_seq_len)]
    return [*argv, "--extra_llm_api_options", str(folder / EXTRA_OPTIONS)]


def launch(experiment: Experiment, model_path: str, port: int, folder: Path) -> ServerLaunch:
    """How the agent starts ``trtllm-serve`` on the checkpoint's folder."""
    model_dir = str(weights.find_model(model_path))
    return ServerLaunch(
        argv=tuple(serve_command(experiment, model_dir, port, folder)), model_name=model_dir,
        env=SERVER_ENV,
        files={EXTRA_OPTIONS: json.dumps(extra_options(experiment, model_dir), indent=1,
                                         sort_keys=True)},
    )
