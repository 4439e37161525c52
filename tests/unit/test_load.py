import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.config.load import load_experiment, plan_study
from harness.errors import UserInputError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["demo.yaml", "sweep.yaml"])
def test_shipped_studies_plan(name):
    study, plan = plan_study(REPO / "studies" / name)
    assert plan.runs and study.name


def test_demo_study_shape():
    _, plan = plan_study(REPO / "studies" / "demo.yaml")
    assert len(plan.experiments) == 4 and len(plan.runs) == 8
    assert all(p.experiment.device == "cpu" for p in plan.experiments)


def test_good_minimal_file(tmp_path):
    path = write(tmp_path, "name: x\nexperiment: {model: m, device: cpu}\n")
    study, plan = plan_study(path)
    assert len(plan.runs) == 1
    assert plan.runs[0].run_id == f"{plan.experiments[0].id}-c1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nexperiment: {model: m}\nexecution: {cycles: 0}\n",
         "execution.cycles: Input should be greater than or equal to 1 (got 0)"),
        ("name: x\nexperiment: {model: m}\nsweeps: {batch_size: [1]}\n",
         "sweeps: unknown field (did you mean 'sweep'?)"),
        ("name: x\nexperiment: {model: m, batch_size: many}\n",
         "experiment.batch_size: Input should be a valid integer"),
        ("name: x\nexperiment: {model: m}\nsweep: {batch_size: []}\n",
         "sweep: sweep axis 'batch_size' is empty"),
        ("name: x\nexperiment: {model: m, backend: vlm}\n",
         "experiment.backend: Input should be 'pytorch', 'vllm' or 'tensorrt_llm'"),
        ("name: x\nexperiment: {model: m}\nexecution: {order: random}\n",
         "execution.order: Input should be 'sequential', 'interleaved' or 'shuffled'"),
        ("name: x\nexperiment: {model: m, workload: {output_tokens: -1}}\n",
         "experiment.workload.output_tokens: Input should be greater than or equal to 1"),
        ("name: x\nexperiment: {model: m, device: cpu, precision: fp8}\n",
         "experiment: backend 'pytorch' on cpu cannot run precision 'fp8'"),
        ("name: x\nexperiment: {model: m, device: cpu, backend: tensorrt_llm}\n",
         "backend 'tensorrt_llm' does not run on device 'cpu'"),
        ("experiment: {model: m}\n", "name: this field is required"),
        ("name: x\nexperiment: {model: m}\nexecution: {gap_s: -1}\n",
         "execution.gap_s: Input should be greater than or equal to 0"),
        ("name: x\nexperiment: {model: m}\noutput_dir: ../elsewhere\n",
         "output_dir: output_dir must not contain '..'"),
        ("name: x\nname: y\nexperiment: {model: m}\n", "duplicate key 'name'"),
        ("name: x\nbase: &b {model: m}\nexperiment: *b\n", "anchors"),
        ("- just\n- a list\n", "expected a mapping at the top level, got list"),
        ("", "expected a mapping at the top level, got empty"),
        ("name: x\nexperiment: {model: m\n", "invalid YAML"),
    ],
)
def test_bad_files_name_file_field_and_expectation(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(UserInputError) as e:
        plan_study(path)
    message = str(e.value)
    assert str(path) in message
    assert expected in message


def test_binary_and_non_utf8_files(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"name: x\x00\x01")
    with pytest.raises(UserInputError, match="binary"):
        plan_study(binary)
    latin = tmp_path / "l.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserInputError, match="not UTF-8"):
        plan_study(latin)


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError, match="no such file"):
        plan_study(tmp_path / "nope.yaml")


def test_single_experiment_file(tmp_path):
    path = write(tmp_path, "model: m\ndevice: cpu\nprecision: fp32\nbatch_size: 2\n", "e.yaml")
    exp = load_experiment(path)
    assert exp.batch_size == 2 and exp.block("pytorch") is not None


@pytest.mark.parametrize("more", ["sweep: {batch_size: [1, 2]}", "include: [{batch_size: 4}]"])
def test_a_study_of_several_experiments_is_not_one_experiment(tmp_path, monkeypatch, capsys, more):
    path = write(tmp_path, f"name: x\nexperiment: {{model: m, device: cpu}}\n{more}\n")
    with pytest.raises(UserInputError) as e:
        load_experiment(path)
    key = more.split(":")[0]
    assert str(e.value) == (
        f"{path}: {key}: this is a study of several experiments, where one experiment is "
        f"expected; run the study with `harness study run {path}` (list its runs with "
        f"`harness study plan {path}`), or put the one experiment to run in a file of its own")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["harness", "run", str(path), "--runner", "local"])
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 2 and f"harness study run {path}" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_a_study_of_one_experiment_reads_as_that_experiment(tmp_path):
    path = write(tmp_path, "name: x\nexperiment: {model: m, device: cpu, batch_size: 3}\n"
                           "sweep: {}\n")
    assert load_experiment(path).batch_size == 3


def test_cli_exit_code_2_and_nothing_created(tmp_path):
    path = write(tmp_path, "name: x\nexperiment: {model: m, batch_size: 0}\n"
                 f"output_dir: {tmp_path / 'out'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "study", "run", str(path), "--runner", "local"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert f"{path}: experiment.batch_size: Input should be greater than or equal to 1" in proc.stderr
    assert not (tmp_path / "out").exists()
