"""The container description (runtimes.container) without a docker client: mounts and args."""

from pathlib import Path

from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.container import LABEL_PREFIX, create_args, mounts
from harness.controller.runtimes.hardening import mount_problems
from harness.results.schema import GpuLibrary


def job(tmp_path: Path, **kw) -> RunJob:
    run_dir = tmp_path / "study" / "runs" / "e-c1"
    run_dir.mkdir(parents=True)
    fields = {"run_id": "e-c1", "study": "s", "run_dir": run_dir, "image": "harness/pytorch:cpu",
              "model_host_path": None, "model_ref": "m", "hf_cache": None, "gpus": [],
              "device": "cpu", "timeout_s": 60, "gpu_library": GpuLibrary()}
    return RunJob(**{**fields, **kw})


def test_the_hub_folder_is_mounted_and_the_token_stays_on_the_host(tmp_path: Path):
    hf = tmp_path / "hf"
    (hf / "hub").mkdir(parents=True)
    (hf / "token").write_text("secret", encoding="utf-8")
    volumes, env = mounts(job(tmp_path, hf_cache=hf), tmp_path / "cache")
    assert volumes[str(hf / "hub")] == {"bind": "/hf-cache/hub", "mode": "ro"}
    assert str(hf) not in volumes and env["HF_HOME"] == "/hf-cache"
    run_dir = str((tmp_path / "study" / "runs" / "e-c1").resolve())
    assert volumes[run_dir] == {"bind": "/results", "mode": "rw"}


def test_the_create_arguments_are_hardened_and_labelled(tmp_path: Path):
    run = job(tmp_path, mem_limit="2g")
    volumes, env = mounts(run, tmp_path / "cache")
    assert mount_problems(volumes, {"/results"}) == []
    args = create_args(run, volumes, env, (1000, 1000))
    assert (args["network_mode"], args["user"], args["cap_drop"], args["security_opt"]) == (
        "none", "1000:1000", ["ALL"], ["no-new-privileges"])
    assert args["command"] == ["--config", "/results/config.json"] and args["detach"] is True
    assert args["labels"][f"{LABEL_PREFIX}.run"] == "e-c1"
    assert args["mem_limit"] == args["memswap_limit"] == "2g"
    assert "device_requests" not in args  # a CPU run asks for no GPU
