"""What will fail is found before anything starts: `study plan`, `study run` and `study resume`
refuse a missing or wrong model folder and a missing or malformed prompts file with exit 2,
naming the file, the field and the fix; what this host lacks (a hub id not in the cache, an
image not built) is a warning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from harness import cli
from harness.backends.weights import cached_snapshots, model_folder_problem
from harness.controller.lifecycle import resume_study, start_study
from harness.errors import UserInputError
from harness.results import manifest as mio

PROMPTS = "".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(4))


def model_folder(path: Path, weights: str | None = "model.safetensors") -> Path:
    """A folder that looks like a model: config.json and a weights file (contents unread)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    if weights:
        (path / weights).write_bytes(b"")
    return path


def study_file(tmp_path: Path, model: str, dataset: str = "synthetic", **execution) -> Path:
    path = tmp_path / "studies" / "s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({
        "name": "checks",
        "experiment": {"model": model, "device": "cpu",
                       "workload": {"dataset": dataset, "num_prompts": 4}},
        "sweep": {"batch_size": [1, 2]},
        "execution": {"runner": "local", **execution},
        "output_dir": str(tmp_path / "results"),
    }))
    return path


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, " ".join(out.err.split())


def refused(monkeypatch, capsys, tmp_path: Path, study: Path) -> str:
    """Plan and run both exit 2 with the same problems; nothing is created."""
    code, _, plan_err = run_cli(monkeypatch, capsys, "study", "plan", str(study))
    assert code == 2, plan_err
    code, _, run_err = run_cli(monkeypatch, capsys, "study", "run", str(study))
    assert code == 2, run_err
    assert not (tmp_path / "results").exists(), "a study folder was created"
    assert plan_err == run_err
    assert plan_err.startswith(f"error: {study}: the study cannot run as it is; nothing was "
                               "started")
    return plan_err


def test_a_missing_model_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = refused(monkeypatch, capsys, tmp_path, study_file(tmp_path, "./models/nope"))
    assert (f"- {tmp_path / 'studies' / 's.yaml'}: model './models/nope': the model folder "
            f"'./models/nope' does not exist (looked at {tmp_path / 'models' / 'nope'}); fix the "
            f"path (relative model paths are read from the working folder, {tmp_path})") in err


def test_a_folder_that_holds_no_model_is_refused(tmp_path, monkeypatch, capsys):
    folder = model_folder(tmp_path / "m", weights=None)
    err = refused(monkeypatch, capsys, tmp_path, study_file(tmp_path, str(folder)))
    assert (f"{folder} has config.json but no weights (*.safetensors, *.bin, *.pt, *.pth, "
            "*.gguf, *.index.json), so it does not look like a model folder; point model: at "
            "the folder that holds config.json and the weights") in err


@pytest.mark.parametrize(("content", "expected"), [
    (None, "no such prompts file; fix the path (looked at {path}: relative paths are read from "
           "the study file's folder)"),
    ('{"prompt": "a"}\n{"prompt": }\n', "{path}: line 2: not JSON"),
    ('{"prompt": "a"}\n', "{path}: has 1 usable prompts (non-blank), the experiment asks for 4 "
                          "(workload.num_prompts)"),
], ids=["missing", "malformed", "too-short"])
def test_a_bad_prompts_file_is_refused(tmp_path, monkeypatch, capsys, content, expected):
    path = tmp_path / "studies" / "data" / "p.jsonl"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    model = model_folder(tmp_path / "m")
    err = refused(monkeypatch, capsys, tmp_path, study_file(tmp_path, str(model), "data/p.jsonl"))
    assert (f"workload.dataset 'data/p.jsonl' (in 2 experiments): "
            f"{expected.format(path=path)}") in err


def test_an_experiment_file_is_checked_by_plan(tmp_path, monkeypatch, capsys):
    file = tmp_path / "e.yaml"
    file.write_text("model: m\ndevice: cpu\nworkload: {dataset: p.jsonl}\n")
    code, _, err = run_cli(monkeypatch, capsys, "study", "plan", str(file))
    assert code == 2 and f"{file}: workload.dataset 'p.jsonl' (in 1 experiment)" in err


def test_a_hub_id_outside_the_cache_is_a_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    study = study_file(tmp_path, "org/model")
    code, out, err = run_cli(monkeypatch, capsys, "study", "plan", str(study))
    text = " ".join(out.split())
    assert code == 0, err
    assert (f"warning: {study}: model 'org/model' is not a folder (looked at ") in text
    assert (f"has no snapshot in the Hugging Face cache {tmp_path / 'hf'} "
            "(models--org--model/snapshots); runs are offline") in text
    snapshot = tmp_path / "hf" / "hub" / "models--org--model" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    assert cached_snapshots(tmp_path / "hf", "org/model") == [snapshot]
    code, out, _ = run_cli(monkeypatch, capsys, "study", "plan", str(study))
    assert code == 0 and "warning" not in out


@pytest.mark.docker
def test_an_image_not_built_is_a_warning(tmp_path, monkeypatch, capsys):
    model = model_folder(tmp_path / "m")
    study = study_file(tmp_path, str(model), runner="docker")
    data = yaml.safe_load(study.read_text())
    data["images"] = {"pytorch": "harness-test/absent:never-built"}
    study.write_text(yaml.safe_dump(data))
    code, out, err = run_cli(monkeypatch, capsys, "study", "plan", str(study))
    assert code == 0, err
    assert "image 'harness-test/absent:never-built' is not present" in " ".join(out.split())


def test_model_folders_look_like_models(tmp_path):
    assert model_folder_problem(model_folder(tmp_path / "a")) is None
    assert model_folder_problem(model_folder(tmp_path / "b", "model.safetensors.index.json")) is None
    assert "no config.json" in model_folder_problem(tmp_path)
    (tmp_path / "f").write_text("")
    assert "is a file, not a model folder" in model_folder_problem(tmp_path / "f")


def test_a_study_records_its_files_and_a_resume_checks_them_again(tmp_path, monkeypatch):
    prompts = tmp_path / "studies" / "p.jsonl"
    prompts.parent.mkdir(parents=True)
    prompts.write_text(PROMPTS)
    model = model_folder(tmp_path / "m")
    prepared = start_study(study_file(tmp_path, str(model), "p.jsonl"))
    (entry,) = mio.load(prepared.study_dir).datasets
    assert (entry.field, entry.source, entry.path) == ("workload.dataset", "p.jsonl", str(prompts))
    monkeypatch.chdir(tmp_path / "results")  # resumed from elsewhere: the recorded path is used
    assert resume_study(prepared.study_dir).run.launcher.datasets == {
        ("workload.dataset", "p.jsonl"): entry}
    prompts.unlink()
    before = (prepared.study_dir / "manifest.json").read_bytes()
    with pytest.raises(UserInputError) as e:
        resume_study(prepared.study_dir)
    assert "the study cannot run as it is" in str(e.value) and "no such prompts file" in str(e.value)
    assert (prepared.study_dir / "manifest.json").read_bytes() == before
