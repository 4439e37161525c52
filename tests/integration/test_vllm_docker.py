"""vLLM on the CPU in real containers: the image, and a mixed-engine study run end to end.

Kept small for CI (two cores): the tiny model, a few prompts, short windows, no baseline.
Each vLLM run spends most of its time starting the engine (tens of seconds).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.slow]

VLLM = "{enforce_eager: true, kv_cache_space_gib: 1, max_num_seqs: 4}"

def study_yaml(model: Path, out: Path) -> str:
    """A mixed study: backend x batch size, 4 runs, each in its backend's image."""
    return yaml.safe_dump({
        "name": "mixed",
        "experiment": {
            "model": str(model), "backend": "pytorch", "device": "cpu", "precision": "fp32",
            "batch_size": 2,
            "workload": {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8, "seed": 3},
            "measurement": {"warmup_batches": 1, "baseline_s": 0, "min_window_s": 0.3,
                            "prefill_split": True},
            "vllm": yaml.safe_load(VLLM),
        },
        "sweep": {"backend": ["pytorch", "vllm"], "batch_size": [1, 4]},
        "execution": {"cycles": 1, "order": "interleaved", "timeout_s": 600, "runner": "docker"},
        "output_dir": str(out),
    })


def check_latency(result: ExperimentResult, requests: list[dict]) -> None:
    """Per-request TTFT, inter-token latencies and end-to-end times are present and sane."""
    w = result.experiment.workload
    assert result.latency.per_token_timestamps is True
    assert result.latency.ttft.n == len(requests) == result.tokens.requests
    assert result.latency.itl.n == len(requests) * (w.output_tokens - 1)
    for r in requests:
        assert r["output_tokens"] == w.output_tokens
        assert 0 < r["ttft_s"] <= r["e2e_s"]
        assert len(r["itl_s"]) == w.output_tokens - 1 and all(x >= 0 for x in r["itl_s"])


def read_requests(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "requests.jsonl").read_text().splitlines()]


def test_image_has_vllm_cpu_without_the_mismatched_torch_extras(docker_client, vllm_cpu_image):
    code = (
        "import importlib.util, json, torch, vllm, harness.backends.vllm.engine; "
        "print(json.dumps({'torch': torch.__version__, 'vllm': vllm.__version__, "
        "'extras': [m for m in ('torchvision', 'torchaudio', 'torchcodec') "
        "if importlib.util.find_spec(m)]}))"
    )
    out = docker_client.containers.run(
        vllm_cpu_image, entrypoint=["python", "-c", code], network_mode="none",
        user=f"{os.getuid()}:{os.getgid()}", remove=True,
    ).decode()
    found = json.loads(out.strip().splitlines()[-1])
    assert found == {"torch": "2.13.0+cpu", "vllm": "0.32.0", "extras": []}
    labels = docker_client.images.get(vllm_cpu_image).labels
    assert (labels["harness.backend"], labels["harness.device"]) == ("vllm", "cpu")


def check_vllm_result(result: ExperimentResult) -> None:
    """What only a vLLM run records: engine options, engine start apart, prefill, FLOPs."""
    info = result.backend_info
    assert info["engine"] == "vllm" and info["vllm"] == "0.32.0"
    assert info["llm_kwargs"]["kv_cache_memory_bytes"] == 1024**3
    assert info["llm_kwargs"]["dtype"] == "float32"
    # the engine start is timed apart from (and before) the measured window
    assert 0 < info["engine_start_s"] <= result.timings.load_s
    assert result.prefill.measured is True
    assert result.compute.flops is not None  # parameter counts from the safetensors headers
    # the engine core ran in the agent's process, so tokens are timed when they were made
    assert info["engine_core_client"] == "InprocClient"
    assert (result.latency.timestamp_source, result.latency.clock) == (
        "engine_step", info["token_timing"])
    assert "VLLM_ENABLE_V1_MULTIPROCESSING=0" in info["token_timing"]


def test_mixed_pytorch_and_vllm_study_in_containers(
    tmp_path, docker_client, pytorch_cpu_image, vllm_cpu_image, tiny_model
):
    out = tmp_path / "results"
    study = tmp_path / "study.yaml"
    study.write_text(study_yaml(tiny_model, out))
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "study", "run", str(study)],
        capture_output=True, text=True, cwd=REPO, timeout=1500,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = list(out.iterdir())
    manifest = read_model(study_dir / "manifest.json", Manifest)
    assert manifest.state == "complete" and len(manifest.runs) == 4
    tags = {}
    engines: dict[str, tuple[str, str]] = {}
    for rec in manifest.runs:
        assert rec.status == "done", (rec.run_id, rec.reason, rec.message)
        run_dir = study_dir / "runs" / rec.run_id
        result = read_model(run_dir / "result.json", ExperimentResult)
        tags[rec.run_id] = (result.experiment.backend, rec.image.tag)
        engines[result.experiment.backend] = (result.backend_info["engine"],
                                               result.backend_info["engine_version"])
        assert result.environment["in_container"] is True
        assert result.tokens.output_tokens == result.tokens.requests * 8
        check_latency(result, read_requests(run_dir))
        if result.experiment.backend == "vllm":
            check_vllm_result(result)
    assert sorted(tags.values()) == [
        ("pytorch", pytorch_cpu_image), ("pytorch", pytorch_cpu_image),
        ("vllm", vllm_cpu_image), ("vllm", vllm_cpu_image),
    ]
    # the report's Setup names both engines with the versions the runs recorded
    setup = (study_dir / "report" / "report.md").read_text().split("## Setup", 1)[1]
    assert {backend for backend, _ in engines.items()} == {"pytorch", "vllm"}
    assert engines["vllm"][0] == "vllm" and engines["pytorch"][0] == "transformers"
    for backend, (engine, version) in engines.items():
        assert f"- backend {backend}: {engine} {version} on torch " in setup, setup
    mine = {"label": "org.harness.study=mixed"}
    assert docker_client.containers.list(all=True, filters=mine) == [], "a container was left behind"


MOE_CONFIG = {  # a tiny Mixtral's config.json: only its config is read, never weights
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
    "num_hidden_layers": 2, "num_local_experts": 4, "num_experts_per_tok": 2,
    "vocab_size": 512, "max_position_embeddings": 256, "torch_dtype": "float32",
}


def test_the_engine_arguments_pass_vllm_0_32_own_validation(
    docker_client, vllm_cpu_image, tiny_model, tmp_path
):
    """llm_kwargs against vLLM 0.32.0 itself: names, values, quantization methods, MoE."""
    moe = tmp_path / "moe"
    moe.mkdir()
    (moe / "config.json").write_text(json.dumps(MOE_CONFIG))
    probe = Path(__file__).with_name("_vllm_args_probe.py")
    out = docker_client.containers.run(
        vllm_cpu_image, entrypoint=["python", "/probe.py", "/tiny", "/moe"], network_mode="none",
        user=f"{os.getuid()}:{os.getgid()}", remove=True, stderr=False,
        volumes={str(probe): {"bind": "/probe.py", "mode": "ro"},
                 str(tiny_model): {"bind": "/tiny", "mode": "ro"},
                 str(moe): {"bind": "/moe", "mode": "ro"}},
    ).decode()
    found = json.loads(out.strip().splitlines()[-1])
    assert found["unknown_args"] == {} and found["config_errors"] == {}
    assert found["schemes_unknown_to_vllm"] == [] and found["schemes_deprecated_in_vllm"] == []
    assert found["refused_not_deprecated"] == []  # what the harness refuses, vLLM refuses too
    assert found["default_fp8_online"] is True and found["default_fp8_accepted"] is None
    assert "fbgemm_fp8" in found["fbgemm_fp8_refused"] and "deprecated" in found["fbgemm_fp8_refused"]
    # the harness's reading of a config.json agrees with vLLM on which models are MoE
    assert found["moe"] == {"dense": [False, False], "moe": [True, True]}
    # serving mode: the server's command line parses with vLLM's own parser into the same
    # engine arguments as offline
    assert found["serve_mismatch"] == {}
