"""What will fail is found before anything starts: `study plan`, `study run`, `study resume` and
`harness run` refuse a missing or wrong model folder and a missing or malformed prompts file
with exit 2, naming the file, the field and the fix; what this host lacks (a hub id not in the
cache, an image not built) is a warning for a plan and an error at a start."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest.mock import create_autospec

import pytest
import yaml

from harness import cli
from harness.backends.weights import cached_snapshots, model_folder_problem
from harness.config.experiment import Experiment
from harness.config.study import Study
from harness.config.sweep import expand
from harness.controller.lifecycle import resume_study, start_study
from harness.controller.preflight import check_experiments, check_study, locate_model
from harness.controller.runtimes.docker import DockerRuntime
from harness.controller.runtimes.local import LocalRuntime
from harness.controller.single import prepare_experiment
from harness.errors import RunFailure, UserInputError
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


# -- a model reference that can only be a path ---------------------------------------------------


@pytest.mark.parametrize(("model", "because"), [
    ("models/tiny", "{tmp}/models is a folder"),
    ("a/b/c", "it has more than one '/' (a hub id is ORG/NAME)"),
], ids=["first-part-a-folder", "two-slashes"])
def test_a_path_like_model_that_does_not_exist_is_refused(tmp_path, monkeypatch, capsys, model,
                                                           because):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    (tmp_path / "models").mkdir()  # the checkout's form: models/NAME, run from the checkout
    err = refused(monkeypatch, capsys, tmp_path, study_file(tmp_path, model))
    assert (f"- {tmp_path / 'studies' / 's.yaml'}: model {model!r}: the model folder {model!r} "
            f"does not exist (looked at {tmp_path / model}); it is read as a path, not a Hugging "
            f"Face hub id, because {because.format(tmp=tmp_path)}; fix the path (relative model "
            f"paths are read from the working folder, {tmp_path})") in err
    assert "models--" not in err


def test_org_name_is_a_hub_id_unless_its_org_is_a_folder_here(tmp_path):
    hf = tmp_path / "hf"
    assert locate_model("org/model", str(hf), tmp_path).host_path is None  # a hub id
    (tmp_path / "org").mkdir()
    with pytest.raises(RunFailure, match="because .*/org is a folder") as e:
        locate_model("org/model", str(hf), tmp_path)
    assert e.value.reason == "model_not_found"
    (hf / "hub" / "models--org--model" / "snapshots" / "abc").mkdir(parents=True)
    assert locate_model("org/model", str(hf), tmp_path).hf_cache == hf  # cached: the hub id


# -- at a start, what this host lacks is an error --------------------------------------------------


def test_at_a_start_a_hub_id_outside_the_cache_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    study = study_file(tmp_path, "org/model")
    code, out, _ = run_cli(monkeypatch, capsys, "study", "plan", str(study))
    assert code == 0 and "warning:" in out  # a plan may be made on another host
    code, _, err = run_cli(monkeypatch, capsys, "study", "run", str(study))
    assert code == 2, err
    assert err.startswith(f"error: {study}: the study cannot run as it is; nothing was started")
    assert (f"{study}: model 'org/model' is not a folder (looked at ") in err
    assert (f"has no snapshot in the Hugging Face cache {tmp_path / 'hf'} "
            "(models--org--model/snapshots); runs are offline") in err
    assert not (tmp_path / "results").exists()
    snapshot = tmp_path / "hf" / "hub" / "models--org--model" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    prepared = start_study(study)
    snapshot.rmdir()  # the cache was cleaned before the resume
    with pytest.raises(UserInputError, match="model 'org/model' is not a folder"):
        resume_study(prepared.study_dir)


def docker_without(tags: set[str]) -> DockerRuntime:
    """A docker runtime whose engine lacks ``tags`` (no engine needed)."""
    runtime = create_autospec(DockerRuntime, instance=True)
    runtime.name = "docker"
    runtime.prepare.side_effect = lambda tag: None if tag in tags else object()
    return runtime


def test_an_image_not_built_is_an_error_at_a_start_and_a_warning_in_a_plan(tmp_path):
    model = model_folder(tmp_path / "m")
    exp = Experiment.model_validate({"model": str(model), "device": "cpu", "precision": "fp32"})
    runtime = docker_without({"harness/pytorch:cpu"})
    kwargs = {"origin": "e.yaml", "images": {}, "hf_cache": None, "model_base": tmp_path,
              "dataset_base": tmp_path}
    started = check_experiments([exp], runtime, **kwargs)
    planned = check_experiments([exp], runtime, at_start=False, **kwargs)
    said = ("image 'harness/pytorch:cpu' is not present; runs of backend pytorch will fail "
            "unless it is built first ('harness images build --backend pytorch --device cpu'")
    assert [e for e in started.errors if e.startswith(said)] and not started.warnings
    assert [w for w in planned.warnings if w.startswith(said)] and not planned.errors
    assert check_experiments([exp], docker_without(set()), **kwargs).errors == []


def test_under_slurm_an_image_not_built_here_is_a_warning(tmp_path):
    model = model_folder(tmp_path / "m")
    study = Study.model_validate({
        "name": "s", "experiment": {"model": str(model), "device": "cpu", "precision": "fp32"},
        "execution": {"executor": "slurm", "slurm": {"time": "10"}}})
    found = check_study(study, expand(study), docker_without({"harness/pytorch:cpu"}),
                        origin="s.yaml", model_base=tmp_path, dataset_base=tmp_path)
    assert not found.errors  # the nodes run the containers, with their own images
    assert any("'harness/pytorch:cpu' is not present" in w for w in found.warnings)


# -- harness run: the same checks, the same refusal ------------------------------------------------


def experiment_file(folder: Path, model: str, dataset: str = "synthetic") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "e.yaml"
    file.write_text(yaml.safe_dump({"model": model, "device": "cpu", "precision": "fp32",
                                    "workload": {"dataset": dataset, "num_prompts": 4}}))
    return file


def test_harness_run_refuses_a_malformed_prompts_file_before_anything_starts(
        tmp_path, monkeypatch, capsys):
    model = model_folder(tmp_path / "m")
    file = experiment_file(tmp_path / "exp", str(model), "prompts/p.jsonl")
    bad = tmp_path / "exp" / "prompts" / "p.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"prompt": "a"}\n{"prompt": }\n')
    elsewhere = tmp_path / "cwd"  # a same-named good file where the command is started
    (elsewhere / "prompts").mkdir(parents=True)
    (elsewhere / "prompts" / "p.jsonl").write_text(PROMPTS)
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(monkeypatch, capsys, "run", str(file), "--runner", "local",
                             "--output-dir", str(tmp_path / "single"))
    assert code == 2, out + err
    assert err.startswith(f"error: {file}: the experiment cannot run as it is; nothing was "
                          "started")
    assert (f"- {file}: workload.dataset 'prompts/p.jsonl' (in 1 experiment): {bad}: line 2: "
            "not JSON") in err
    assert "dataset_not_found" not in out + err
    assert not (tmp_path / "single").exists() and not (elsewhere / "results").exists()


def test_harness_run_refuses_a_missing_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    file = experiment_file(tmp_path, "./models/nope")
    code, _, err = run_cli(monkeypatch, capsys, "run", str(file), "--runner", "local")
    assert code == 2, err
    assert (f"{file}: model './models/nope': the model folder './models/nope' does not exist "
            f"(looked at {tmp_path / 'models' / 'nope'})") in err
    assert not (tmp_path / "results").exists()


def test_harness_run_reads_files_from_the_experiment_files_folder(tmp_path, monkeypatch):
    model = model_folder(tmp_path / "m")
    file = experiment_file(tmp_path / "exp", str(model), "p.jsonl")
    (tmp_path / "exp" / "p.jsonl").write_text(PROMPTS)
    (tmp_path / "p.jsonl").write_text(PROMPTS + PROMPTS)
    monkeypatch.chdir(tmp_path)
    single = prepare_experiment(file, runner="local", output_dir=tmp_path / "single")
    assert [d.path for d in single.datasets] == [str(tmp_path / "exp" / "p.jsonl")]
    assert single.notes == [] and single.model_base == tmp_path


def test_a_failed_run_of_harness_run_exits_4_with_its_reason(tmp_path, monkeypatch, capsys):
    exits = tmp_path / "agent"  # stands in for the agent: exits 3 and writes nothing
    exits.write_text(f"#!{sys.executable}\nraise SystemExit(3)\n")
    exits.chmod(0o755)
    monkeypatch.setattr("harness.controller.single.select_runtime",
                        lambda choice: (LocalRuntime(python=str(exits)), "a test"))
    file = experiment_file(tmp_path, str(model_folder(tmp_path / "m")))
    code, out, err = run_cli(monkeypatch, capsys, "run", str(file), "--output-dir",
                             str(tmp_path / "single"))
    assert code == 4, out + err
    assert "the run failed (agent_exit)" in err
    (run_dir,) = (tmp_path / "single").iterdir()
    assert (run_dir / "error.json").is_file()
