"""Files a study names (prompt files): read by one set of rules, resolved from the study file's
folder, checked and hashed once on the host, handed to the agent at a path its runner gives, and
checked again by the agent before it uses them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from harness.agent.__main__ import _spec_from_experiment
from harness.agent.workload import dataset_for, file_prompts
from harness.config.datasets import (
    CONTAINER_ROOT,
    DatasetFile,
    field_of,
    named_files,
    prompt_texts,
    resolve,
)
from harness.config.experiment import Experiment
from harness.controller.datasets import files_for, resolve_files
from harness.controller.runtimes.docker import DockerRuntime
from harness.controller.runtimes.local import LocalRuntime
from harness.errors import RunFailure, UserInputError
from harness.results.schema import RunInfo, RunSpec

PROMPTS = "".join(json.dumps({"prompt": f"prompt number {i}"}) + "\n" for i in range(4))


def experiment(dataset: str = "prompts.jsonl", num_prompts: int = 4) -> Experiment:
    return Experiment.model_validate({
        "model": "m", "device": "cpu",
        "workload": {"dataset": dataset, "num_prompts": num_prompts, "input_tokens": 8},
    })


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- the format -----------------------------------------------------------------------------


def test_prompt_texts_skip_blank_lines_and_blank_prompts():
    data = b'{"prompt": "a"}\n\n   \n{"prompt": "  "}\n{"prompt": "b", "id": 7}\n'
    assert prompt_texts(data, "p.jsonl") == ["a", "b"]


@pytest.mark.parametrize(("data", "expected"), [
    (b'{"prompt": "a"}\nnot json\n', "p.jsonl: line 2: not JSON (Expecting value)"),
    (b'{"text": "a"}\n', 'p.jsonl: line 1: no "prompt" string'),
    (b'{"prompt": 5}\n', 'p.jsonl: line 1: no "prompt" string'),
    (b'["a"]\n', 'p.jsonl: line 1: no "prompt" string'),
    ('{"prompt": "café"}\n'.encode("latin-1"), "p.jsonl: is not UTF-8 text (byte 15)"),
])
def test_a_malformed_prompts_file_is_named_with_its_line(data, expected):
    with pytest.raises(UserInputError) as e:
        prompt_texts(data, "p.jsonl")
    assert str(e.value).startswith(expected)
    if "line" in expected:
        assert '{"prompt": "Hello"}' in str(e.value)  # the format, by example


def test_only_files_are_named():
    assert named_files(experiment("synthetic")) == []
    ((field, value),) = named_files(experiment("data/p.jsonl"))
    assert (field.path, value) == ("workload.dataset", "data/p.jsonl")


def test_relative_paths_resolve_from_the_given_folder_not_the_working_one(tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    assert resolve("d/p.jsonl", tmp_path) == tmp_path / "d" / "p.jsonl"
    assert resolve("../p.jsonl", tmp_path / "s") == tmp_path / "p.jsonl"
    assert resolve("/abs/p.jsonl", tmp_path) == Path("/abs/p.jsonl")
    assert resolve("~/p.jsonl", tmp_path) == Path.home() / "p.jsonl"


# -- on the host: resolved once, checked, hashed ----------------------------------------------


def test_a_study_file_reads_its_prompts_from_its_own_folder(tmp_path, monkeypatch):
    prompts = write(tmp_path / "study" / "data" / "prompts.jsonl", PROMPTS)
    monkeypatch.chdir(tmp_path)  # not the study's folder
    found = resolve_files([experiment("data/prompts.jsonl")] * 2, tmp_path / "study", "s.yaml")
    assert found.errors == [] and found.notes == []
    (entry,) = found.files
    assert entry == DatasetFile(field="workload.dataset", source="data/prompts.jsonl",
                                path=str(prompts),
                                sha256=hashlib.sha256(prompts.read_bytes()).hexdigest())


def test_problems_name_the_study_file_the_field_and_the_fix(tmp_path):
    write(tmp_path / "short.jsonl", PROMPTS)
    write(tmp_path / "bad.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n')
    os.mkfifo(tmp_path / "pipe.jsonl")  # never read: it would hang, or swallow the prompts
    exps = [experiment("missing.jsonl"), experiment("short.jsonl", num_prompts=5),
            experiment("short.jsonl", num_prompts=2), experiment("bad.jsonl", num_prompts=1),
            experiment("pipe.jsonl")]
    found = resolve_files(exps, tmp_path, "s.yaml")
    assert found.files == []
    assert found.errors == [
        f"s.yaml: workload.dataset 'missing.jsonl' (in 1 experiment): no such prompts file; fix "
        f"the path (looked at {tmp_path / 'missing.jsonl'}: relative paths are read from the "
        "study file's folder)",
        f"s.yaml: workload.dataset 'short.jsonl' (in 2 experiments): {tmp_path / 'short.jsonl'}: "
        "has 4 usable prompts (non-blank), the experiment asks for 5 (workload.num_prompts); "
        "add prompts or lower workload.num_prompts",
        f"s.yaml: workload.dataset 'bad.jsonl' (in 1 experiment): {tmp_path / 'bad.jsonl'}: "
        "line 2: not JSON (Expecting ',' delimiter); expected one JSON object per line with a "
        '"prompt" string, e.g. {"prompt": "Hello"}',
        "s.yaml: workload.dataset 'pipe.jsonl' (in 1 experiment): is not a regular file (a "
        "pipe, device or socket); a prompts file must be one; fix the path (looked at "
        f"{tmp_path / 'pipe.jsonl'}: relative paths are read from the study file's folder)",
    ]


def test_a_resumed_study_reads_its_files_where_it_recorded_them(tmp_path):
    prompts = write(tmp_path / "elsewhere" / "p.jsonl", PROMPTS)
    first = resolve_files([experiment("p.jsonl")], prompts.parent, "s.yaml").files
    # the study folder's own copy has another folder: the recorded path is used, not it
    again = resolve_files([experiment("p.jsonl")], tmp_path / "results", "study.yaml", first)
    assert again.files == first and again.notes == []
    write(prompts, PROMPTS + '{"prompt": "one more"}\n')
    changed = resolve_files([experiment("p.jsonl")], tmp_path / "results", "study.yaml", first)
    (note,) = changed.notes
    assert note.startswith(f"{prompts} (workload.dataset) changed since the study began")
    assert changed.files[0].sha256 != first[0].sha256


def test_each_run_gets_the_recorded_file_or_fails_before_it_starts(tmp_path):
    prompts = write(tmp_path / "p.jsonl", PROMPTS)
    (entry,) = resolve_files([experiment("p.jsonl")], tmp_path, "s.yaml").files
    known = {(entry.field, entry.source): entry}
    assert files_for(experiment("p.jsonl"), known, Path("/nowhere")) == [entry]
    assert files_for(experiment("synthetic"), known, tmp_path) == []
    prompts.unlink()
    with pytest.raises(RunFailure) as e:
        files_for(experiment("p.jsonl"), known, tmp_path)
    assert e.value.reason == "dataset_not_found"
    assert str(e.value) == (f"the prompts file {prompts} (workload.dataset 'p.jsonl') is gone "
                            "since the study began; put it back, then resume the study")


def test_each_runner_says_where_its_agent_reads_the_file(tmp_path):
    entry = DatasetFile(field="workload.dataset", source="d/p.jsonl", path="/data/d/p.jsonl",
                        sha256="0" * 64)
    assert LocalRuntime().dataset_path_for_agent(entry) == "/data/d/p.jsonl"
    assert (DockerRuntime(client=object(), cache_dir=tmp_path).dataset_path_for_agent(entry)
            == f"{CONTAINER_ROOT}/workload.dataset/p.jsonl")


# -- in the agent: the same rules, and the hash checked again --------------------------------


def spec_with(exp: Experiment, datasets: list[DatasetFile]) -> RunSpec:
    return RunSpec(run=RunInfo(study="s", experiment_id=exp.id, cycle=1, run_id="r"),
                   experiment=exp, model_path="m", datasets=datasets)


def test_the_agent_reads_the_file_at_its_agent_path_and_checks_its_hash(tmp_path):
    prompts = write(tmp_path / "mounted.jsonl", PROMPTS)
    exp = experiment("p.jsonl", num_prompts=3)
    entry = DatasetFile(field="workload.dataset", source="p.jsonl", path="/host/p.jsonl",
                        sha256=hashlib.sha256(prompts.read_bytes()).hexdigest(),
                        agent_path=str(prompts))
    given = dataset_for(spec_with(exp, [entry]), "workload.dataset")
    assert given == entry
    ids = file_prompts(exp.workload, given, lambda text: [len(w) for w in text.split()])
    assert ids == [[6, 6, 1]] * 3  # "prompt number N", the first 3 of 4
    write(prompts, PROMPTS.replace("number 0", "number zero"))
    with pytest.raises(UserInputError, match="the prompts file changed since it was checked"):
        file_prompts(exp.workload, given, lambda text: [1])


def test_too_few_prompts_after_encoding_is_an_input_error(tmp_path):
    prompts = write(tmp_path / "p.jsonl", PROMPTS)
    exp = experiment("p.jsonl", num_prompts=4)
    entry = DatasetFile(field="workload.dataset", source="p.jsonl", path=str(prompts),
                        sha256=hashlib.sha256(prompts.read_bytes()).hexdigest())
    with pytest.raises(UserInputError, match="has 0 usable prompts, the workload asks for 4"):
        file_prompts(exp.workload, entry, lambda text: [])


def test_an_experiment_file_reads_its_prompts_from_its_own_folder(tmp_path, monkeypatch):
    prompts = write(tmp_path / "exp" / "datasets" / "p.jsonl", PROMPTS)
    file = write(tmp_path / "exp" / "e.yaml",
                 "model: m\ndevice: cpu\nworkload: {dataset: datasets/p.jsonl, num_prompts: 4}\n")
    monkeypatch.chdir(tmp_path)
    spec = _spec_from_experiment(Path("exp/e.yaml"))
    (entry,) = spec.datasets
    assert entry.path == entry.agent_path == str(prompts)
    assert entry.sha256 == hashlib.sha256(prompts.read_bytes()).hexdigest()
    assert field_of("workload.dataset").what == "prompts file"
    prompts.unlink()
    with pytest.raises(UserInputError, match="no such prompts file"):
        _spec_from_experiment(file)
