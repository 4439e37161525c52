"""Runner choice, the local agent's environment, closing messages and legacy failure reasons."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from _synthetic import make_study

from harness.controller.lifecycle import resume_study
from harness.controller.runtimes import parse_runner, select_runtime
from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.local import LocalRuntime
from harness.errors import UserInputError
from harness.results import manifest as mio
from harness.results.reasons import FailureReason
from harness.results.schema import RunError, RunRecord
from harness.secrets import forwarded_env


def test_runner_choices_are_typed():
    assert [parse_runner(r) for r in ("auto", "docker", "local")] == ["auto", "docker", "local"]
    with pytest.raises(UserInputError, match="--runner: expected auto, docker, local, got 'dokcer'"):
        parse_runner("dokcer")
    runtime, why = select_runtime("local")
    assert runtime.name == "local" and why == "the local runner was requested"


# -- the local agent's environment -------------------------------------------------------------


def run_env_printer(tmp_path: Path, job_env: dict[str, str], device: str = "cpu") -> dict[str, str]:
    """Run a real process through the local runtime in place of the agent; its environment."""
    printer = tmp_path / "print-env"
    printer.write_text(f"#!{sys.executable}\nimport json, os\nprint(json.dumps(dict(os.environ)))\n")
    printer.chmod(printer.stat().st_mode | stat.S_IXUSR)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    job = RunJob(run_id="r-c1", study="s", run_dir=run_dir, image="", model_host_path=None,
                 model_ref="m", hf_cache=tmp_path / "hf", gpus=[1, 3], device=device,
                 timeout_s=60, env=job_env)
    outcome = LocalRuntime(python=str(printer)).run(job)
    assert outcome.exit_code == 0, (run_dir / "container.log").read_text()
    return json.loads((run_dir / "container.log").read_text())


def test_the_local_agent_gets_an_allow_list_of_the_environment(tmp_path, monkeypatch):
    token = "hf_" + "t" * 34
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_" + "u" * 34)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_API_KEY", "w" * 40)
    monkeypatch.setenv("SOME_TOOL_SETTING", "1")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("CUDA_CACHE_PATH", "/tmp/cuda-cache")
    monkeypatch.setenv("NVIDIA_DRIVER_CAPABILITIES", "compute")
    monkeypatch.setenv("TZ", "UTC")
    env = run_env_printer(tmp_path, forwarded_env(), device="cuda")
    # the token reaches the agent only as HF_TOKEN (and its legacy name), nothing else secret
    assert env["HF_TOKEN"] == token
    assert "AWS_SECRET_ACCESS_KEY" not in env and "WANDB_API_KEY" not in env
    assert "SOME_TOOL_SETTING" not in env
    assert not [v for k, v in env.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
                and v in (token, "a" * 40, "w" * 40)]
    # what it needs to run: the allow-list and what the harness sets
    for name in ("PATH", "LC_ALL", "OMP_NUM_THREADS", "CUDA_CACHE_PATH",
                 "NVIDIA_DRIVER_CAPABILITIES", "TZ"):
        assert env[name] == os.environ[name], name
    assert env["HF_HOME"] == str(tmp_path / "hf")
    assert (env["HF_HUB_OFFLINE"], env["TRANSFORMERS_OFFLINE"]) == ("1", "1")
    assert env["HARNESS_RUN_ID"] == "r-c1" and env["CUDA_VISIBLE_DEVICES"] == "1,3"


def test_no_token_no_token_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    env = run_env_printer(tmp_path, forwarded_env())
    assert "HF_TOKEN" not in env and "CUDA_VISIBLE_DEVICES" not in env


# -- what the user is told ---------------------------------------------------------------------


def test_resuming_says_which_runner_it_continues_with_and_why(tmp_path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 2]}, j_factors={}, pending=1,
                           with_model=True)
    manifest = mio.load(study_dir)
    manifest.runner_reason = "runner auto: no Docker engine answers (x); using the local runner"
    mio.save(manifest, study_dir)
    prepared = resume_study(study_dir)
    assert prepared.runner_why == (
        "continuing with the local runner this study used (chosen because runner auto: no "
        "Docker engine answers (x); using the local runner)")
    assert "requested" not in prepared.runner_why
    forced = resume_study(study_dir, runner="local")
    assert forced.runner_why == "the local runner was requested"
    assert forced.run.manifest.runner_reason == (
        "the local runner was requested when the study was resumed")


def test_the_next_step_after_input_failures_is_to_fix_the_file(tmp_path):
    study_dir = make_study(tmp_path, sweep={"batch_size": [1, 2]}, j_factors={}, failed=1)
    manifest = mio.load(study_dir)
    plain = mio.next_step(manifest, study_dir)
    assert plain == f"continue with: harness study resume {study_dir}"  # agent_exit: retry
    (failed,) = [r for r in manifest.runs if r.status == "failed"]
    failed.reason = FailureReason.MODEL_NOT_FOUND
    text = mio.next_step(manifest, study_dir)
    assert "input reasons (model_not_found)" in text and "fix the study file" in text
    assert f"harness study resume {study_dir} --file FIXED.yaml --force" in text


@pytest.mark.parametrize(("legacy", "reason", "message"), [
    ("UserInputError", "input_invalid", "bad field"),
    ("EnvironmentProblem", "environment", "bad field"),
    ("no_such_reason", "agent_error", "no_such_reason: bad field"),
    ("timeout", "timeout", "bad field"),
])
def test_reasons_of_older_files_still_read(legacy, reason, message):
    err = RunError.model_validate({"run_id": "r", "reason": legacy, "message": "bad field"})
    assert (err.reason, err.message) == (reason, message)
    assert isinstance(err.reason, FailureReason)
    rec = RunRecord.model_validate({"run_id": "r", "experiment_id": "e", "cycle": 1,
                                    "position": 0, "reason": legacy, "message": "bad field"})
    assert (rec.reason, rec.message) == (reason, message)
    bare = RunRecord.model_validate({"run_id": "r", "experiment_id": "e", "cycle": 1,
                                     "position": 0, "reason": legacy})
    assert bare.message == (legacy if reason == "agent_error" else None)


def test_every_failure_reason_is_explained_in_docs_faults():
    text = (Path(__file__).resolve().parents[2] / "docs" / "faults.md").read_text("utf-8")
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `")}
    assert {f"`{reason.value}`" for reason in FailureReason} <= rows
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    assert "(docs/faults.md)" in readme
