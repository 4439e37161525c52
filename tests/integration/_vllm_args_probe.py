"""Run inside harness/vllm:cpu: the harness's vLLM arguments against vLLM 0.32.0's own checks.

Usage: python _vllm_args_probe.py DENSE_MODEL_DIR MOE_CONFIG_DIR; prints one JSON object.
No weights are loaded: EngineArgs and ModelConfig validate names, values and the checkpoint's
config.json only.
"""

import dataclasses
import json
import sys
from pathlib import Path

from vllm.config import ModelConfig
from vllm.config.quantization import _ONLINE_SHORTHANDS
from vllm.engine.arg_utils import EngineArgs
from vllm.model_executor.layers.quantization import (
    DEPRECATED_QUANTIZATION_METHODS,
    QUANTIZATION_METHODS,
)

from harness.backends import weights
from harness.backends.vllm import SPEC
from harness.backends.vllm.engine import llm_kwargs
from harness.backends.vllm.options import DEFAULT_FP8, REFUSED
from harness.config.experiment import Experiment

DENSE, MOE = sys.argv[1], sys.argv[2]

#: experiments the CPU build can configure fully (EngineArgs.create_engine_config)
ON_CPU = [
    {"precision": "fp32", "vllm": {"enforce_eager": True, "kv_cache_space_gib": 1,
                                   "max_num_seqs": 4}},
    {"precision": "bf16", "vllm": {"max_model_len": 512, "max_num_batched_tokens": 512,
                                   "enable_prefix_caching": True, "enable_chunked_prefill": True,
                                   "gpu_memory_utilization": 0.5}},
    {"precision": "fp16", "vllm": {"dtype": "auto"}},
]
#: experiments for GPUs: their argument names must be EngineArgs fields
ON_GPU = [
    {"precision": "fp8"},
    {"precision": "fp8", "vllm": {"quantization": "fp8", "kv_cache_dtype": "fp8"}},
    {"precision": "int4", "vllm": {"quantization": "awq_marlin", "tensor_parallel_size": 2}},
    {"precision": "int8", "vllm": {"quantization": "gptq", "dtype": "float16"}},
    {"precision": "bf16", "vllm": {"kv_cache_dtype": "fp8_e4m3", "enforce_eager": False}},
]


def experiment(data: dict, device: str) -> Experiment:
    return Experiment.model_validate({"model": DENSE, "backend": "vllm", "device": device,
                                      "precision": data["precision"], "vllm": data.get("vllm", {})})


def refused_by_vllm(**kwargs) -> str | None:
    try:
        ModelConfig(model=DENSE, **kwargs)
    except Exception as e:  # noqa: BLE001 - the message is the finding
        return str(e)
    return None


def serve_mismatches() -> dict:
    """Each experiment's server command line through vLLM's own parser, against llm_kwargs."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from harness.backends.vllm.serve import serve_command

    out = {}
    for i, data in enumerate(ON_CPU + ON_GPU):
        device = "cpu" if i < len(ON_CPU) else "cuda"
        exp = Experiment.model_validate({**experiment(data, device).model_dump(), "mode": "serving"})
        config = weights.model_config(Path(DENSE))
        argv = serve_command(exp, DENSE, 8123, config)
        try:
            args = make_arg_parser(FlexibleArgumentParser()).parse_args(argv[3:])
            validate_parsed_serve_args(args)
            parsed = vars(AsyncEngineArgs.from_cli_args(args))
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the message is the finding
            out[str(data)] = f"{type(e).__name__}: {e}"
            continue
        wrong = {k: [v, parsed.get(k)] for k, v in llm_kwargs(exp, DENSE, config).items()
                 if k not in ("model", "disable_log_stats") and parsed.get(k) != v}
        if wrong or (args.host, args.port) != ("127.0.0.1", 8123):
            out[str(data)] = {**wrong, "host_port": [args.host, args.port]}
    return out


fields = {f.name for f in dataclasses.fields(EngineArgs)}
found: dict = {"unknown_args": {}, "config_errors": {}}
for i, data in enumerate(ON_CPU + ON_GPU):
    device = "cpu" if i < len(ON_CPU) else "cuda"
    kwargs = llm_kwargs(experiment(data, device), DENSE, weights.model_config(Path(DENSE)))
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        found["unknown_args"][str(data)] = unknown
    if device == "cpu":
        try:
            config = EngineArgs(**kwargs).create_engine_config()
            assert config.model_config.dtype is not None
        except Exception as e:  # noqa: BLE001
            found["config_errors"][str(data)] = f"{type(e).__name__}: {e}"

schemes = {s for values in SPEC.quantization.values() for s in values}
found["schemes_unknown_to_vllm"] = sorted(schemes - set(QUANTIZATION_METHODS))
found["schemes_deprecated_in_vllm"] = sorted(schemes & set(DEPRECATED_QUANTIZATION_METHODS))
found["refused_not_deprecated"] = sorted(set(REFUSED) - set(DEPRECATED_QUANTIZATION_METHODS))
found["default_fp8_online"] = DEFAULT_FP8 in _ONLINE_SHORTHANDS and "fp8" not in _ONLINE_SHORTHANDS
found["default_fp8_accepted"] = refused_by_vllm(quantization=DEFAULT_FP8, dtype="bfloat16")
found["fbgemm_fp8_refused"] = refused_by_vllm(quantization="fbgemm_fp8", dtype="bfloat16")
found["moe"] = {
    "dense": [ModelConfig(model=DENSE).is_moe,
              weights.num_experts(weights.model_config(Path(DENSE))) > 0],
    "moe": [ModelConfig(model=MOE, tokenizer=DENSE, skip_tokenizer_init=True).is_moe,
            weights.num_experts(weights.model_config(Path(MOE))) > 0],
}
found["serve_mismatch"] = serve_mismatches()
print(json.dumps(found))
