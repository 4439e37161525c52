"""Each backend's server command line, built from the experiment's options (pure)."""

import json
import sys
from pathlib import Path

from harness.backends import registry
from harness.backends.tensorrt_llm.serve import EXTRA_OPTIONS, extra_options
from harness.backends.tensorrt_llm.serve import serve_command as trt_command
from harness.backends.vllm.engine import llm_kwargs
from harness.backends.vllm.serve import SERVER_MODULE, flags
from harness.backends.vllm.serve import serve_command as vllm_command
from harness.config.experiment import Experiment


def vllm_exp(**options) -> Experiment:
    return Experiment(model="/m", backend="vllm", device="cpu", precision="fp32", mode="serving",
                      vllm=options)


def value_of(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_vllm_runs_its_api_server_module_with_the_agents_python_on_loopback():
    argv = vllm_command(vllm_exp(), "/model", 8123)
    assert argv[:3] == [sys.executable, "-m", SERVER_MODULE]
    assert value_of(argv, "--model") == "/model" == value_of(argv, "--served-model-name")
    assert value_of(argv, "--host") == "127.0.0.1" and value_of(argv, "--port") == "8123"
    assert "--disable-log-stats" not in argv  # statistics feed /metrics


def test_vllm_flags_are_the_offline_engines_arguments():
    e = vllm_exp(max_num_seqs=4, enforce_eager=True, kv_cache_space_gib=1,
                 max_num_batched_tokens=256, enable_chunked_prefill=False)
    argv = vllm_command(e, "/model", 1)
    kwargs = llm_kwargs(e, "/model")
    assert value_of(argv, "--max-num-seqs") == "4" and value_of(argv, "--dtype") == "float32"
    assert value_of(argv, "--kv-cache-memory-bytes") == str(2**30)
    assert "--enforce-eager" in argv and "--no-enable-chunked-prefill" in argv
    assert "--no-enable-prefix-caching" in argv and "--quantization" not in argv
    for key, value in kwargs.items():  # every argument set offline is given to the server
        if key not in ("model", "disable_log_stats") and value is not None:
            assert f"--{key.replace('_', '-')}" in argv or f"--no-{key.replace('_', '-')}" in argv


def test_vllm_online_fp8_is_named_as_offline():
    e = Experiment(model="/m", backend="vllm", device="cuda", precision="fp8", mode="serving")
    assert value_of(vllm_command(e, "/m", 1), "--quantization") == "fp8_per_tensor"
    quantized = {"quantization_config": {"quant_method": "fp8"}}
    assert "--quantization" not in vllm_command(e, "/m", 1, quantized)


def test_flags_spell_booleans_both_ways_and_skip_unset():
    assert flags({"a_b": True, "c": False, "d": None, "e": 2}) == ["--a-b", "--no-c", "--e", "2"]


def test_tensorrt_llm_serve_takes_limits_as_flags_and_the_rest_from_a_file():
    e = Experiment(model="/m", backend="tensorrt_llm", device="cuda", precision="bf16",
                   mode="serving", tensorrt_llm={"max_batch_size": 32, "max_seq_len": 2048,
                                                 "runtime": "pytorch"})
    argv = trt_command(e, "/model", 9000, Path("/r/server"))
    assert argv[:2] == ["trtllm-serve", "/model"]
    assert value_of(argv, "--backend") == "pytorch" and value_of(argv, "--max_batch_size") == "32"
    assert value_of(argv, "--max_seq_len") == "2048" and "--max_num_tokens" not in argv
    assert value_of(argv, "--extra_llm_api_options") == f"/r/server/{EXTRA_OPTIONS}"
    extra = extra_options(e, "/model")
    assert extra["dtype"] == "bfloat16"
    assert extra["kv_cache_config"] == {"free_gpu_memory_fraction": 0.9, "enable_block_reuse": False}


def test_launch_files_are_json_which_yaml_reads(tmp_path: Path):
    e = Experiment(model="/m", backend="tensorrt_llm", device="cuda", precision="fp8",
                   mode="serving", tensorrt_llm={"prequantized": True})
    extra = extra_options(e, "/model")
    assert extra["quant_config"] == {"quant_algo": "FP8"}
    assert json.loads(json.dumps(extra)) == extra


def test_which_backends_serve_is_a_capability():
    serving = {s.name: s.serving is not None for s in registry.specs()}
    assert serving == {"pytorch": False, "vllm": True, "tensorrt_llm": True}
    assert registry.get("vllm").describe()["serving"] is True
