"""The command line: typed choices, plan output at any size, tables that fit, errors said once."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _synthetic import make_study
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.options import backend_devices
from harness.cli.render import Col, Grid, StudyDisplay, fitted
from harness.config.sweep import Plan
from harness.results.events import StudyAborted, StudyInterrupted
from harness.results.headline import HEADLINE
from harness.results.reasons import ExitCode

REPO = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """Output with the boxes and line breaks of typer's error panels taken out."""
    return " ".join(text.replace("│", " ").split())


def harness(*args: str, cwd: Path = REPO, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600)


# -- typed choices -------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    (["study", "run", "s.yaml", "--runner", "dokcer"],
     "'dokcer' is not one of auto, docker, local (did you mean 'docker'?)"),
    (["images", "build", "--backend", "vlm"], "(did you mean 'vllm'?)"),
    (["images", "build", "--device", "cdua"],
     "'cdua' is not one of cpu, cuda (did you mean 'cuda'?)"),
    (["study", "plan", "s.yaml", "--format", "jsn"], "(did you mean 'json'?)"),
])
def test_a_bad_choice_is_refused_with_the_closest(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert expected in flat(result.output)


def test_backend_choices_and_default_come_from_the_backends_table() -> None:
    text = flat(CliRunner().invoke(app, ["images", "build", "--help"]).output)
    names = list(backend_devices())
    assert "|".join(names) in text
    assert f"(default {names[0]})" in text


def test_runner_is_a_typed_choice_everywhere_it_is_taken() -> None:
    for command in (["study", "run"], ["study", "resume"], ["bundle", "reproduce"], ["run"]):
        text = flat(CliRunner().invoke(app, [*command, "--help"]).output)
        assert "auto|docker|local" in text, command


def test_harness_run_describes_its_own_options() -> None:
    text = flat(CliRunner().invoke(app, ["run", "--help"]).output)
    assert "study" not in text.replace("without a study", "")
    assert "(default auto: a Docker container when an engine answers, else a local process)" in text
    assert "new run folder EXPID-TIMESTAMP is made in (default results/single)" in text


# -- study plan ---------------------------------------------------------------------------------


def test_plan_of_a_single_experiment_says_how_to_run_it() -> None:
    proc = harness("study", "plan", "studies/experiment-cpu.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "studies/experiment-cpu.yaml is one experiment, not a study" in proc.stdout
    assert "harness run studies/experiment-cpu.yaml" in proc.stdout
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    assert compose["pytorch"]["image"] == "harness/pytorch:cpu"
    assert ("EXPERIMENT=./studies/experiment-cpu.yaml docker compose run --rm pytorch"
            in proc.stdout)


def serving_study(tmp_path: Path, sweep: dict, **serving: object) -> Path:
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({
        "name": "served",
        "experiment": {"model": "m", "backend": "vllm", "device": "cpu", "precision": "fp32",
                       "mode": "serving", "serving": {"num_requests": 24, **serving}},
        "sweep": sweep, "execution": {"cycles": 1, "runner": "local"},
    }))
    return path


def plan_table(proc: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The plan table's header and rows, split on the two-space column gap."""
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#"))
    table = [lines[start], *(x for x in lines[start + 2:] if x[:1].isdigit() and "-c1 " in x)]
    return [[c.strip() for c in line.split("  ") if c.strip()] for line in table]


def test_the_plan_shows_a_serving_runs_load_where_an_offline_run_shows_its_batch(
        tmp_path: Path) -> None:
    study = serving_study(tmp_path, {"serving.request_rate": [4, 8], "vllm.max_num_seqs": [2, 4]},
                          concurrency=3)
    header, *rows = plan_table(harness("study", "plan", str(study), columns=200))
    assert header == ["#", "run", "cycle", "backend", "device", "precision", "load",
                      "vllm.max_num_seqs"]  # no batch, and the rate only in the load
    assert [r[6:] for r in rows] == [["4 requests/s, at most 3 in flight", "2"],
                                     ["4 requests/s, at most 3 in flight", "4"],
                                     ["8 requests/s, at most 3 in flight", "2"],
                                     ["8 requests/s, at most 3 in flight", "4"]]
    as_csv = list(csv.DictReader(io.StringIO(
        harness("study", "plan", str(study), "--format", "csv").stdout)))
    assert {r["batch_size"] for r in as_csv} == {""}  # no batch size applies
    assert [r["serving.request_rate"] for r in as_csv] == ["4.0", "4.0", "8.0", "8.0"]


def test_a_plan_of_both_modes_shows_batch_and_load_where_each_applies(tmp_path: Path) -> None:
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump({
        "name": "both", "experiment": {"model": "m", "backend": "vllm", "device": "cpu",
                                       "precision": "fp32"},
        "sweep": {"mode": ["offline", "serving"]}, "execution": {"cycles": 1, "runner": "local"},
    }))
    header, *rows = plan_table(harness("study", "plan", str(path), columns=200))
    assert header[3:] == ["backend", "device", "precision", "batch", "load", "mode"]
    assert sorted(r[6:] for r in rows) == [["-", "every request at once", "serving"],
                                           ["1", "-", "offline"]]


def test_the_plan_of_a_serving_experiment_names_its_load(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"model": "m", "backend": "vllm", "device": "cpu",
                                    "precision": "fp32", "mode": "serving",
                                    "serving": {"concurrency": 4, "num_requests": 64}}))
    proc = harness("study", "plan", str(path), columns=200)
    assert proc.returncode == 0, proc.stderr
    assert "vllm on cpu, fp32, serving a closed loop of 4, 64 requests, model m" in proc.stdout
    assert "batch" not in proc.stdout


def test_plan_of_an_invalid_experiment_file_fails_with_its_problems(tmp_path: Path) -> None:
    bad = tmp_path / "e.yaml"
    bad.write_text("model: m\nbatch_size: 0\n")
    proc = harness("study", "plan", str(bad))
    assert proc.returncode == ExitCode.USAGE
    assert f"{bad}: batch_size:" in proc.stderr
    assert proc.stderr.count("error:") == 1


def big_study(tmp_path: Path) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump({
        "name": "big",
        "experiment": {"model": "m", "device": "cpu", "precision": "fp32"},
        "sweep": {"batch_size": list(range(1, 21)), "workload.seed": list(range(25)),
                  "precision": ["fp32", "bf16"]},
        "execution": {"cycles": 1, "max_runs": 5000},
    }))
    return path


def test_a_large_plan_is_summarised(tmp_path: Path) -> None:
    proc = harness("study", "plan", str(big_study(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "1000 experiments x 1 cycles = 1000 runs" in out
    assert "  precision: fp32: 500, bf16: 500" in out
    assert "runs per backend/device: pytorch/cpu: 1000" in out
    assert "  batch_size: 1: 50, 2: 50," in out and "... 8 more values" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and "-c1" in line]
    assert [r.split()[0] for r in rows] == ["1", "2", "3", "4", "5",
                                            "996", "997", "998", "999", "1000"]
    assert all(len(line) <= 80 for line in out.splitlines()), out


def test_plan_all_prints_every_run(tmp_path: Path) -> None:
    proc = harness("study", "plan", str(big_study(tmp_path)), "--all")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "-c1 " in line]
    assert len(rows) == 1000


def test_plan_as_json_and_csv(tmp_path: Path) -> None:
    study = big_study(tmp_path)
    as_json = harness("study", "plan", str(study), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    plan = Plan.model_validate_json(as_json.stdout)  # standard output holds only the plan
    assert len(plan.runs) == 1000 and "1000 runs" in as_json.stderr
    as_csv = harness("study", "plan", str(study), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 1000
    first = rows[0]
    assert first["run_id"] == plan.runs[0].run_id and first["position"] == "0"
    experiment = plan.experiment(plan.runs[0].experiment_id)
    assert (first["backend"], first["device"]) == (experiment.backend, experiment.device)
    assert first["workload.seed"] == str(experiment.workload.seed)
    written = harness("study", "plan", str(study), "--output", str(tmp_path / "plan.csv"))
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "plan.csv").read_text() == as_csv.stdout
    harness("study", "plan", str(study), "-o", str(tmp_path / "plan.json"))
    assert Plan.model_validate_json((tmp_path / "plan.json").read_text()) == plan
    unknown = harness("study", "plan", str(study), "-o", str(tmp_path / "plan.txt"))
    assert unknown.returncode == ExitCode.USAGE and "--format json or csv" in unknown.stderr


# -- tables that fit ----------------------------------------------------------------------------


def test_grid_never_cuts_a_cell_and_fitted_drops_columns_to_fit() -> None:
    rows = [{"run": "abc-c1", "param.a": 1, "param.b": "fp16", "param.c": 32,
             "x": 139456.25, "y": 0.000123456, "z": None}]
    head = [Col("run", "run", left=True)]
    params = [Col(f"param.{k}", k) for k in "abc"]
    tail = [Col("x", "throughput", ".1f"), Col("y", "energy", ".4g"), Col("z", "latency")]
    wide = fitted(rows, head, params, tail, width=200)
    assert [c.header for c in wide.cols] == ["run", "a", "b", "c", "throughput", "energy",
                                            "latency"]
    narrow = fitted(rows, head, params, tail, width=40)
    lines = list(narrow.lines())
    assert all(len(line) <= 40 for line in lines), lines
    assert "139456.2" in lines[2] and "0.0001235" in lines[2] and "1/fp16/32" in lines[2]
    assert "setup = a/b/c" in lines and any("not shown: latency" in line for line in lines)
    tiny = fitted(rows, head, params, tail, width=5)  # nothing fits: numbers stay whole
    assert "139456.2" in list(tiny.lines())[2]
    assert Grid.of(head, []).width() == len("run")


@pytest.fixture(scope="module")
def three_axis_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study(
        tmp_path_factory.mktemp("cli"), cycles=1, failed=1,
        sweep={"batch_size": [1, 32], "precision": ["fp16", "bf16"],
               "backend": ["pytorch", "vllm"]},
        j_factors={"batch_size": {32: 0.0001234567}},
        tps_factors={"batch_size": {32: 1394.56789}, "backend": {"vllm": 1.7}},
        with_model=True,
    )


def run_lines(out: str, run_ids: list[str]) -> dict[str, str]:
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    return {run_id: lines[run_id] for run_id in run_ids}


def test_results_table_after_a_study_fits_80_columns(three_axis_study: Path) -> None:
    import pandas as pd

    # nothing left to run (the failed run is kept): the results at once
    proc = harness("study", "resume", str(three_axis_study), "--keep-failed")
    assert proc.returncode == ExitCode.FAILED, proc.stdout + proc.stderr  # one run failed
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    assert "…" not in proc.stdout
    table = pd.read_csv(three_axis_study / "results.csv")
    done = table[table["status"] == "done"]
    shown = run_lines(proc.stdout, list(table["run_id"]))
    for _, row in done.iterrows():
        line = shown[row["run_id"]]
        assert format(row["output_tokens_per_s"], ".1f") in line, line
        assert format(row["j_per_output_token"], ".4g") in line, line
        assert f"{row['param.backend']}/{row['param.precision']}/{row['param.batch_size']}" \
            in line or row["param.backend"] in line
    assert "failed" in shown[table[table["status"] == "failed"]["run_id"].iloc[0]]


def test_resume_says_why_its_runner_was_chosen(three_axis_study: Path) -> None:
    proc = harness("study", "resume", str(three_axis_study), "--keep-failed")
    # the study began with the local runner (the synthetic manifest's reason: "synthetic")
    assert ("Runner: local (continuing with the local runner this study used (chosen because "
            "synthetic))") in " ".join(proc.stdout.split())
    assert "requested" not in proc.stdout


def test_results_table_wide_shows_every_headline_figure(three_axis_study: Path) -> None:
    proc = harness("study", "resume", str(three_axis_study), "--keep-failed", "--wide")
    header = next(line for line in proc.stdout.splitlines() if line.startswith("run "))
    for metric in HEADLINE:
        assert metric.short in header
    for axis in ("batch_size", "precision", "backend"):
        assert axis in header


def test_status_fits_80_columns(three_axis_study: Path) -> None:
    from harness.results.manifest import load

    proc = harness("study", "status", str(three_axis_study))
    assert proc.returncode == 0, proc.stderr
    assert all(len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
    manifest = load(three_axis_study)
    shown = run_lines(proc.stdout, [r.run_id for r in manifest.runs])
    for rec in manifest.runs:
        if rec.status == "done":
            assert format(rec.headline["output_tokens_per_s"], ".1f") in shown[rec.run_id]
    assert "failed: " in proc.stdout and "(agent_exit)" in proc.stdout
    wide = harness("study", "status", str(three_axis_study), "--wide")
    assert "attempts" in wide.stdout and "synthetic failure" not in wide.stdout


# -- each error said once -----------------------------------------------------------------------


def test_a_stopped_study_is_reported_by_the_error_alone(capsys: pytest.CaptureFixture) -> None:
    display = StudyDisplay()
    display(StudyAborted("stopped after 2 consecutive failed runs"))
    display(StudyInterrupted("interrupted by SIGINT"))
    display(StudyAborted("the disk is full"))
    display.close()
    assert capsys.readouterr().out == ""
    assert display.stopped == "the disk is full"


def test_an_error_is_printed_once_with_its_exit_code(tmp_path: Path) -> None:
    proc = harness("study", "status", str(tmp_path))
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.count("no manifest.json") == 1 and proc.stderr.count("error:") == 1
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["status", "resume"])
def test_an_invalid_manifest_is_named_once(tmp_path: Path, command: str) -> None:
    (tmp_path / "manifest.json").write_text('{"study": 3}')
    (tmp_path / "plan.json").write_text("{}")
    (tmp_path / "study.yaml").write_text("name: x\n")
    proc = harness("study", command, str(tmp_path))
    assert proc.returncode == ExitCode.USAGE, proc.stdout + proc.stderr
    assert proc.stderr.count(str(tmp_path)) == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {tmp_path / 'manifest.json'}: does not validate")


@pytest.mark.slow
def test_an_input_failure_in_the_agent_is_said_once(tmp_path: Path) -> None:
    """The run's failure line and the stop are each printed once, without class names.

    The input failure: the prompts file is changed between two runs (after the checks at the
    start passed), so the agent refuses it.
    """
    import hashlib
    import time

    from harness.models import write_tiny_model
    from harness.results.manifest import load

    model = write_tiny_model(tmp_path / "tiny")
    prompts = tmp_path / "elsewhere" / "prompts.jsonl"
    prompts.parent.mkdir()
    before = b'{"prompt": "one"}\n{"prompt": "two"}\n'
    after = before + b'{"prompt": "three"}\n'
    prompts.write_bytes(before)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "once",
        "experiment": {
            "model": str(model), "device": "cpu", "precision": "fp32", "batch_size": 1,
            "workload": {"dataset": "elsewhere/prompts.jsonl", "num_prompts": 2,
                         "input_tokens": 8, "output_tokens": 2},
            "measurement": {"warmup_batches": 0, "baseline_s": 0, "min_window_s": 0,
                            "prefill_split": False},
        },
        "sweep": {"batch_size": [1, 2]},
        "execution": {"cycles": 1, "runner": "local", "max_consecutive_failures": 1,
                      "gap_s": 5},
        "output_dir": str(tmp_path / "results"),
    }))
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "study", "run", str(study)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        folders = list((tmp_path / "results").glob("once-*"))
        try:
            if folders and load(folders[0]).runs[0].status == "done":
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    prompts.write_bytes(after)  # in the gap before the second run
    out, err = proc.communicate(timeout=300)
    both = out + err
    assert proc.returncode == ExitCode.ABORTED, both
    assert "UserInputError" not in both
    assert both.count("the prompts file changed since it was checked") == 1, both
    assert both.count("consecutive failed runs") == 1, both
    (study_dir,) = (tmp_path / "results").iterdir()
    (run_dir,) = [p for p in (study_dir / "runs").iterdir() if (p / "error.json").exists()]
    error = json.loads((run_dir / "error.json").read_text())
    assert error["reason"] == "input_invalid"
    assert error["message"] == (
        f"{prompts}: the prompts file changed since it was checked (sha256 "
        f"{hashlib.sha256(after).hexdigest()[:12]}, recorded "
        f"{hashlib.sha256(before).hexdigest()[:12]}); restore it, or start the study anew with it")


def test_plan_shows_the_placement(tmp_path: Path) -> None:
    path = tmp_path / "par.yaml"
    path.write_text(yaml.safe_dump({
        "name": "par",
        "experiment": {"model": "m", "device": "cuda", "backend": "vllm", "precision": "fp16"},
        "sweep": {"vllm.tensor_parallel_size": [1, 2]},
        "execution": {"gpus": [0, 1, 2, 3], "max_parallel": 8, "runner": "local"},
    }))
    out = flat(harness("study", "plan", str(path)).stdout)
    assert "placement: 4 runs at once (max_parallel 8: the GPUs or CPUs listed do not go round)" \
        in out
    assert "GPUs per run: 1 or 2, from execution.gpus [0, 1, 2, 3], disjoint" in out
    assert "gpus" in out.split("placement:")[0]  # each run's GPU count in the table
    one = harness("study", "plan", "studies/demo.yaml")
    assert "placement: one run at a time" in flat(one.stdout)



def test_one_more_ctrl_c_while_an_interrupted_study_exits_still_exits_130(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the study restored the default handlers as it ended; a second Ctrl+C lands as a
    # KeyboardInterrupt while main() prints the error (CI once saw exit -2 here, not 130)
    import signal

    import harness.cli as cli
    from harness.errors import Interrupted

    def study() -> None:
        raise Interrupted("interrupted by SIGINT: 1/2 runs done")

    printed: list[str] = []

    def print_once_interrupted(text: str) -> None:
        printed.append(text)
        if len(printed) == 1:
            raise KeyboardInterrupt  # the signal that lands mid-print

    monkeypatch.setattr(cli, "app", study)
    monkeypatch.setattr(cli.err_console, "print", print_once_interrupted)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as stop:
            cli.main()
        assert stop.value.code == ExitCode.INTERRUPTED
        assert printed == ["[red]error:[/] interrupted by SIGINT: 1/2 runs done",
                           "[red]interrupted[/]"]
        for signum in previous:  # no further chance to die of a signal on the way out
            assert signal.getsignal(signum) is signal.SIG_IGN
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_ctrl_c_in_the_command_line_leaves_no_unhandled_ctrl_c_mark() -> None:
    # see StoppedBySignal: a plain KeyboardInterrupt through exec'd code would make the
    # process exit -2 however main() caught it
    code = """
import ctypes, os, signal
import harness.cli as cli
cli._interrupt_with_our_own()
try:
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nwhile True: pass")
except KeyboardInterrupt as e:
    print(type(e).__name__)
print(ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value)
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert got.stdout.splitlines() == ["StoppedBySignal", "0"], got


def test_the_summary_counts_runs_per_value_by_type_and_as_written() -> None:
    from harness.cli.plan import _runs_per_value

    # 1, 1.0 and True are equal in Python, but the table writes them apart
    assert _runs_per_value([1, 1.0, True, None, 1], [2, 2, 2, 2, 2]) == {
        "1": 4, "1.0": 2, "True": 2, "-": 2}
    # a whole block swept (unhashable), and experiments with different numbers of runs
    counted = _runs_per_value([{"seed": 1}, {"seed": 1}, {"seed": 2}], [1, 3, 2])
    assert counted == {"{'seed': 1}": 4, "{'seed': 2}": 2}
    assert _runs_per_value(["a", "b", "a"], [1, 3, 2]) == {"a": 3, "b": 3}
