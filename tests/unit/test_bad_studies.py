"""Bad study files: one clear message per problem, exit code 2, and nothing started.

Each case goes through the real command line (``harness study run``) in-process and must name
the file, the field and what was expected (with a suggestion for likely typos).
"""

import os
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.config.load import MAX_FILE_BYTES

OK = "name: bad\nexperiment: {model: m, device: cpu}\n"


def study(extra: str = "", experiment: str = "{model: m, device: cpu}") -> str:
    return f"name: bad\nexperiment: {experiment}\n{extra}"


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + OK


BIG = 8
CASES: list[tuple[str, str | bytes, str]] = [
    # wrong types
    ("int-given-a-word", study(experiment="{model: m, batch_size: many}"),
     "experiment.batch_size: Input should be a valid integer, unable to parse string as an "
     "integer (got 'many')"),
    ("int-given-a-boolean", study(experiment="{model: m, device: cpu, batch_size: yes}"),
     "experiment.batch_size: expected a number, got True (YAML reads true/false"),
    ("string-given-a-list", study("description: [a, b]\n"),
     "description: Input should be a valid string (got ['a', 'b'])"),
    ("name-given-a-number", "name: 5\nexperiment: {model: m}\n",
     "name: Input should be a valid string (got 5)"),
    ("experiment-given-a-list", "name: bad\nexperiment: [m]\n",
     "experiment: Input should be a valid dictionary (got ['m'])"),
    ("sweep-axis-given-a-scalar", study("sweep: {batch_size: 8}\n"),
     "sweep.batch_size: Input should be a valid list (got 8); write [8] for a single value"),
    ("sweep-given-a-list", study("sweep: [batch_size]\n"),
     "sweep: Input should be a valid dictionary (got ['batch_size'])"),
    ("sweep-value-of-wrong-type", study("sweep: {batch_size: [1, two]}\n"),
     "experiment.batch_size: Input should be a valid integer, unable to parse string as an "
     "integer (got 'two') (in 1 of 2: sweep batch_size='two')"),
    ("non-string-key", study("1: 2\n"), "[1]: Keys should be strings (got 1)"),
    # unknown keys, with suggestions
    ("unknown-top-level-key", study("sweeps: {batch_size: [1]}\n"),
     "sweeps: unknown field (did you mean 'sweep'?)"),
    ("unknown-experiment-key", study(experiment="{model: m, batchsize: 4}"),
     "experiment.batchsize: unknown field (did you mean 'batch_size'?)"),
    ("unknown-execution-key", study("execution: {timeout: 5}\n"),
     "execution.timeout: unknown field (did you mean 'timeout_s'?)"),
    ("unknown-measurement-key", study(experiment="{model: m, measurement: {min_window: 2}}"),
     "experiment.measurement.min_window: unknown field (did you mean 'min_window_s'?)"),
    ("unknown-sweep-axis", study("sweep: {batch_sise: [1, 2]}\n"),
     "sweep.batch_sise: unknown field 'batch_sise' (did you mean 'batch_size'?)"),
    ("unknown-backend-option-axis", study("sweep: {vllm.max_num_seq: [64]}\n"),
     "sweep.vllm.max_num_seq: unknown field 'max_num_seq' (did you mean 'max_num_seqs'?)"),
    ("unknown-exclude-key", study("exclude: [{bakend: vllm}]\n"),
     "exclude[0].bakend: unknown field 'bakend' (did you mean 'backend'?)"),
    ("unknown-include-key", study("include: [{batchsize: 2}]\n"),
     "experiment.batchsize: unknown field (did you mean 'batch_size'?) (in 1 of 2: include[0])"),
    # unknown backend, precision the backend cannot run
    ("unknown-backend", study(experiment="{model: m, backend: vlm}"),
     "experiment.backend: Input should be 'pytorch', 'vllm' or 'tensorrt_llm' (got 'vlm') "
     "(did you mean 'vllm'?)"),
    ("unknown-backend-in-images", study("images: {pytorh: harness/pytorch:cpu}\n"),
     "images: unknown backend 'pytorh' (did you mean 'pytorch'?)"),
    ("unknown-backend-in-sweep", study("sweep: {backend: [pytorch, tensorrt]}\n"),
     "experiment.backend: Input should be 'pytorch', 'vllm' or 'tensorrt_llm' (got 'tensorrt') "
     "(did you mean 'tensorrt_llm'?)"),
    ("precision-the-backend-cannot-run", study(experiment="{model: m, device: cpu, precision: fp8}"),
     "experiment: backend 'pytorch' on cpu cannot run precision 'fp8'"),
    ("unknown-runner", study("execution: {runner: kubernetes}\n"),
     "execution.runner: Input should be 'auto', 'docker' or 'local' (got 'kubernetes')"),
    ("hub-dataset", study(experiment="{model: m, workload: {dataset: 'hf:squad'}}"),
     "experiment.workload.dataset: Hugging Face datasets are not read directly"),
    # empty sweeps, contradictions, oversized grids
    ("empty-sweep-axis", study("sweep: {batch_size: []}\n"),
     "sweep: sweep axis 'batch_size' is empty; give at least one value"),
    ("sweep-axis-repeats-a-value", study("sweep: {batch_size: [1, 1]}\n"),
     "sweep: sweep axis 'batch_size' repeats a value"),
    ("include-contradicts-exclude",
     study("sweep: {batch_size: [1, 2]}\nexclude: [{batch_size: 4}]\ninclude: [{batch_size: 4}]\n"),
     "include[0]: also matched by exclude[0] {'batch_size': 4}; the include and the exclude "
     "contradict each other"),
    ("exclude-removes-everything", study("exclude: [{device: cpu}]\n"),
     "exclude: the exclude rules remove every experiment"),
    ("empty-exclude-rule", study("exclude: [{}]\n"),
     "exclude[0]: an empty rule would exclude everything"),
    ("grid-over-max-runs",
     study("sweep: {batch_size: [1,2,3,4,5,6,7,8,9,10], workload.seed: [1,2,3,4,5,6,7,8,9,10,11],"
           " workload.num_prompts: [1,2,3,4,5,6,7,8,9,10]}\n"),
     "execution.max_runs: raise it to at least 1100 to confirm a study this large"),
    ("grid-too-large-to-expand",
     study("sweep: {" + ", ".join(f"{axis}: [{', '.join(str(v) for v in range(1, BIG + 1))}]"
                                  for axis in ("batch_size", "workload.seed", "workload.num_prompts",
                                               "workload.input_tokens", "workload.output_tokens",
                                               "decoding.top_k", "measurement.warmup_batches"))
           + "}\n"),
     "sweep: 2097152 combinations is more than this tool expands (1000000); split the study"),
    # counts and times
    ("zero-cycles", study("execution: {cycles: 0}\n"),
     "execution.cycles: Input should be greater than or equal to 1 (got 0)"),
    ("fractional-cycles", study("execution: {cycles: 2.5}\n"),
     "execution.cycles: Input should be a valid integer, got a number with a fractional part"),
    ("negative-gap", study("execution: {gap_s: -1}\n"),
     "execution.gap_s: Input should be greater than or equal to 0 (got -1)"),
    ("negative-baseline", study(experiment="{model: m, measurement: {baseline_s: -2}}"),
     "experiment.measurement.baseline_s: Input should be greater than or equal to 0 (got -2)"),
    ("zero-timeout", study("execution: {timeout_s: 0}\n"),
     "execution.timeout_s: Input should be greater than 0 (got 0)"),
    ("not-a-number-time", study("execution: {gap_s: .nan}\n"),
     "execution.gap_s: expected a number, got NaN"),
    ("infinite-timeout", study("execution: {timeout_s: .inf}\n"),
     "execution.timeout_s: Input should be less than or equal to 604800 (got inf)"),
    ("zero-max-consecutive-failures", study("execution: {max_consecutive_failures: 0}\n"),
     "execution.max_consecutive_failures: Input should be greater than or equal to 1 (got 0)"),
    ("memory-limit-with-a-wrong-unit", study("execution: {mem_limit: 16GB}\n"),
     "execution.mem_limit: expected a whole number with an optional unit b, k, m or g "
     "(e.g. 512m, 16g) (got '16GB')"),
    ("repeated-gpus", study("execution: {gpus: [0, 0]}\n"),
     "execution.gpus: GPU indices must be distinct (got [0, 0])"),
    # paths escaping the output folder
    ("output-dir-escapes", study("output_dir: results/../../etc\n"),
     "output_dir: output_dir must not contain '..' (got 'results/../../etc')"),
    ("name-that-is-a-path", "name: ../../evil\nexperiment: {model: m}\n",
     "name: expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    # required fields
    ("missing-name", "experiment: {model: m}\n", "name: this field is required"),
    ("missing-model", "name: bad\nexperiment: {device: cpu}\n",
     "experiment.model: this field is required"),
    # the YAML itself
    ("duplicate-top-level-key", "name: a\nname: b\nexperiment: {model: m}\n",
     "duplicate key 'name'"),
    ("duplicate-nested-key", study(experiment="{model: m, batch_size: 1, batch_size: 2}"),
     "duplicate key 'batch_size'"),
    ("alias-bomb", alias_bomb(), "YAML anchors and aliases are not allowed in study files"),
    ("merge-key-alias", "base: &b {model: m}\nname: bad\nexperiment: {<<: *b}\n",
     "YAML anchors and aliases are not allowed in study files"),
    ("python-tag", study(experiment="!!python/object/apply:os.system [ls]"),
     "YAML tags are not allowed in study files"),
    ("two-documents", OK + "---\n" + OK, "expected one YAML document, found a second ('---')"),
    ("tab-indentation", "name: bad\nexperiment:\n\tmodel: m\n",
     "line 3, column 1: invalid YAML: found character '\\t' that cannot start any token"),
    ("unclosed-bracket", "name: bad\nexperiment: {model: m\n", "invalid YAML"),
    ("top-level-list", "- name: bad\n", "expected a mapping at the top level, got list"),
    ("empty-file", "# nothing but a comment\n", "expected a mapping at the top level, got empty"),
    ("deeply-nested", "name: bad\nexperiment: " + "[" * 5000 + "]" * 5000 + "\n",
     "nested too deeply to be a study file"),
    # encodings and sizes
    ("binary", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)),
     "looks like a binary file, expected YAML text"),
    ("latin-1", "name: café\nexperiment: {model: m}\n".encode("latin-1"),
     "is not UTF-8 text (byte 9); save it as UTF-8"),
    ("utf-16", OK.encode("utf-16"), "is UTF-16 text; save it as UTF-8"),
    ("very-large", (OK + "# " + "x" * MAX_FILE_BYTES + "\n").encode(),
     f"is larger than a study file may be ({MAX_FILE_BYTES} bytes)"),
]


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return int(e.value.code or 0), capsys.readouterr().err


def test_at_least_thirty_distinct_cases():
    assert len(CASES) >= 30
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_study_file(tmp_path, monkeypatch, capsys, text, expected):
    path = tmp_path / "study.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code, err = run_cli(monkeypatch, capsys, "study", "run", str(path), "--runner", "local",
                        "--output-dir", str(out))
    assert code == 2, err
    assert str(path) in err
    assert expected in err, err
    assert not out.exists(), "a study folder was created for a bad file"


def test_one_line_per_problem(tmp_path, monkeypatch, capsys):
    path = tmp_path / "study.yaml"
    path.write_text("name: bad\nexperiment: {model: m, batchsize: 2}\n"
                    "execution: {cycles: 0, gap_s: -1}\nsweeps: {}\n")
    code, err = run_cli(monkeypatch, capsys, "study", "run", str(path), "--runner", "local",
                        "--output-dir", str(tmp_path / "out"))
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("  - ")]
    assert len(lines) == 4, err
    assert all(line.startswith(f"  - {path}: ") for line in lines)
    assert any("execution.cycles" in line for line in lines)
    assert any("execution.gap_s" in line for line in lines)
    assert any("sweeps: unknown field (did you mean 'sweep'?)" in line for line in lines)
    assert any("experiment.batchsize: unknown field (did you mean 'batch_size'?)" in line
               for line in lines)


def test_a_thousand_problems_are_summarised(tmp_path, monkeypatch, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(OK + "".join(f"key{i}: 1\n" for i in range(1000)))
    code, err = run_cli(monkeypatch, capsys, "study", "plan", str(path))
    assert code == 2
    assert "... and 960 more problems" in err
    assert len(err.splitlines()) < 50


def test_folder_and_fifo_are_refused(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "study", "run", str(tmp_path))
    assert code == 2 and "is a folder, expected a YAML file" in err
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    code, err = run_cli(monkeypatch, capsys, "study", "run", str(fifo))
    assert code == 2 and "is not a regular file" in err


def test_missing_file(tmp_path, monkeypatch, capsys):
    code, err = run_cli(monkeypatch, capsys, "study", "run", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in err


def test_the_good_file_passes(tmp_path):
    from harness.config.load import plan_study

    path = tmp_path / "study.yaml"
    path.write_text(OK)
    assert len(plan_study(Path(path))[1].runs) == 1
