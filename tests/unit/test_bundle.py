import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pandas as pd
import pytest
from _synthetic import make_study

from harness.bundle import (
    BundleInvalid,
    Limits,
    create,
    extract,
    sample_runs,
    verify,
    verify_root,
)
from harness.bundle.archive import LIMITS_BY_NAME, read_bounded
from harness.errors import UserInputError
from harness.secrets import REDACTED, is_secret_name, redact_text

REPO = Path(__file__).resolve().parents[2]

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
AWS = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
OPENAI = "sk-proj-0123456789abcdefSECRET"
PASSWORD = "correct horse battery staple"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload.sig"
SECRETS = [HF, AWS, OPENAI, PASSWORD, BEARER, "tok-ab12cd34ef56"]


def new_study(root: Path) -> Path:
    return make_study(
        root / "results", sweep={"batch_size": [1, 8], "precision": ["fp32", "bf16"]},
        j_factors={"batch_size": {8: 0.2}}, cycles=2, noise=0.03, failed=1,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A study and its bundle, shared by the tests that only read them."""
    root = tmp_path_factory.mktemp("bundle")
    study = new_study(root)
    return study, create(study, root / "out" / "study.tar.gz", pip_freeze=False).path


@pytest.fixture
def study(built: tuple[Path, Path]) -> Path:
    return built[0]


@pytest.fixture
def bundle(built: tuple[Path, Path]) -> Path:
    return built[1]


@pytest.fixture
def own_study(tmp_path: Path) -> Path:
    """A study a test may change."""
    return new_study(tmp_path)


def unpack(bundle: Path, dest: Path) -> Path:
    return extract(bundle, dest)


def repack(root: Path, bundle: Path, *, update_sums: bool) -> Path:
    if update_sums:
        lines = []
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and rel != "SHA256SUMS":
                lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {rel}\n")
        (root / "SHA256SUMS").write_text("".join(lines))
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    return bundle


def problems_of(bundle: Path) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        verify(bundle)
    return info.value.problems


def a_done_run(root: Path) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    return next(r["run_id"] for r in manifest["runs"] if r["status"] == "done")


# -- round trip ------------------------------------------------------------------------------


def test_round_trip(bundle: Path, study: Path, tmp_path: Path):
    result = verify(bundle)
    assert (result.runs_done, result.runs_failed, result.runs_pending) == (7, 1, 0)
    root = unpack(bundle, tmp_path / "x")
    assert root.name == study.name
    for name in ("study.yaml", "plan.json", "manifest.json", "results.csv", "results.parquet",
                 "summary.csv", "effects.csv", "pareto.csv", "report/report.md",
                 "report/report.html", "REVIEWERS.md", "SHA256SUMS",
                 "provenance/provenance.json", "provenance/environment/packages.txt"):
        assert (root / name).is_file(), name
    for run_dir in (study / "runs").iterdir():
        for f in run_dir.iterdir():
            assert (root / "runs" / run_dir.name / f.name).read_bytes() == f.read_bytes()
    # SHA256SUMS covers every other file, in sha256sum's format
    sums = dict(reversed(line.split("  ", 1)) for line in
                (root / "SHA256SUMS").read_text().splitlines())
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(sums) == files - {"SHA256SUMS"}
    for rel, digest in sums.items():
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest
    prov = json.loads((root / "provenance" / "provenance.json").read_text())
    assert prov["harness_version"] and "revision" in prov["git"]
    reviewers = (root / "REVIEWERS.md").read_text()
    assert "harness bundle verify study.tar.gz" in reviewers
    assert "harness bundle reproduce study.tar.gz --runs 4" in reviewers
    assert f"cd {study.name} && sha256sum -c SHA256SUMS" in reviewers


def test_sha256sum_tool_accepts_the_bundle(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    proc = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_images_are_described_with_their_dockerfile_and_packages(own_study: Path,
                                                                  tmp_path: Path):
    study = own_study
    manifest = json.loads((study / "manifest.json").read_text())
    for rec in manifest["runs"]:
        rec["image"] = {"tag": "harness/pytorch:cuda", "id": "sha256:" + "ab" * 32,
                        "digest": None}
    (study / "manifest.json").write_text(json.dumps(manifest))
    root = unpack(create(study, tmp_path / "b.tar.gz", pip_freeze=False).path, tmp_path / "x")
    prov = json.loads((root / "provenance" / "provenance.json").read_text())
    (image,) = prov["images"]
    assert image["tag"] == "harness/pytorch:cuda" and image["id"] == "sha256:" + "ab" * 32
    assert image["backend"] == "pytorch"
    dockerfile = (root / image["dockerfile"]).read_text()
    assert dockerfile == (REPO / "images" / "Dockerfile").read_text()
    assert (root / image["packages"]).read_text() == "numpy==2.0\n"
    assert "docker image inspect harness/pytorch:cuda" in (root / "REVIEWERS.md").read_text()


def test_bundle_is_not_written_inside_the_study(study: Path):
    with pytest.raises(UserInputError, match="inside the study folder"):
        create(study, study / "b.tar.gz", pip_freeze=False)


# -- tampering -------------------------------------------------------------------------------


def test_a_changed_byte_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    path = root / "runs" / run_id / "requests.jsonl"
    path = path if path.exists() else root / "runs" / run_id / "container.log"
    data = bytearray(path.read_bytes())
    data[0] ^= 1
    path.write_bytes(bytes(data))
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=False))
    rel = path.relative_to(root).as_posix()
    assert problems == [problems[0]] and problems[0].startswith(f"changed file: {rel}: SHA-256")


def test_a_missing_run_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    for f in (root / "runs" / run_id).iterdir():
        f.unlink()
    (root / "runs" / run_id).rmdir()
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    assert f"missing run: {run_id} is done in manifest.json but runs/{run_id}/result.json " \
           "is not in the bundle" in problems


def test_a_missing_run_without_rewritten_sums_is_caught_too(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    (root / "runs" / run_id / "result.json").unlink()
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=False))
    assert f"missing file: runs/{run_id}/result.json is listed in SHA256SUMS but not in the " \
           "bundle" in problems
    assert any(p.startswith(f"missing run: {run_id}") for p in problems)


def test_a_run_dropped_from_the_manifest_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    manifest = json.loads((root / "manifest.json").read_text())
    dropped = manifest["runs"].pop(0)["run_id"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    assert f"missing run: {dropped} is planned but manifest.json has no record of it" in problems


def test_a_schema_violation_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    path = root / "runs" / run_id / "result.json"
    data = json.loads(path.read_text())
    data["tokens"]["output_tokens"] = "many"
    data["surprise"] = 1
    path.write_text(json.dumps(data))
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    rel = f"runs/{run_id}/result.json"
    assert any(p.startswith(f"schema violation: {rel}: tokens.output_tokens:") for p in problems)
    assert any(p.startswith(f"schema violation: {rel}: surprise:") for p in problems)


def test_an_unknown_schema_version_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    path = root / "runs" / run_id / "result.json"
    data = json.loads(path.read_text())
    data["schema_version"] = "9.0"
    path.write_text(json.dumps(data))
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    assert f"schema violation: runs/{run_id}/result.json: schema_version '9.0'; this harness " \
           "reads 1.x" in problems


def test_an_added_file_is_caught(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    (root / "runs" / run_id / "extra.txt").write_text("slipped in\n")
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=False))
    assert problems == [f"added file: runs/{run_id}/extra.txt is in the bundle but not in "
                        "SHA256SUMS"]


def test_a_doctored_summary_is_caught_even_with_fresh_sums(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    summary = pd.read_csv(root / "summary.csv")
    exp_id = summary.loc[0, "experiment_id"]
    summary.loc[0, "j_per_output_token_mean"] *= 0.9
    summary.to_csv(root / "summary.csv", index=False)
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    assert len(problems) == 1
    assert problems[0].startswith(f"aggregates: summary.csv experiment {exp_id} "
                                  "j_per_output_token_mean is")
    assert "but the raw results give" in problems[0]


def test_a_doctored_result_is_caught_by_the_aggregates(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    path = root / "runs" / run_id / "result.json"
    data = json.loads(path.read_text())
    data["throughput"]["output_tokens_per_s"] *= 2
    path.write_text(json.dumps(data))
    problems = problems_of(repack(root, tmp_path / "t.tar.gz", update_sums=True))
    assert any("output_tokens_per_s_mean" in p for p in problems)


def test_links_and_escapes_are_refused(tmp_path: Path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("x/../../outside.txt")
        info.size = 0
        tar.addfile(info)
    with pytest.raises(BundleInvalid, match="refusing to extract"):
        verify(evil)
    assert not (tmp_path.parent / "outside.txt").exists()


# -- archives made by someone else: judged by their headers before anything is extracted ------


def write_zero_bomb(path: Path, size: int) -> Path:
    """A real tar.gz holding one member of `size` zero bytes, in a small fraction of its size.

    Concatenated gzip members are one valid gzip stream: the header, then the same compressed
    MiB of zeros again and again, then the end-of-archive blocks.
    """
    info = tarfile.TarInfo("bomb/zeros.bin")
    info.size = size
    mib = gzip.compress(bytes(1 << 20), compresslevel=9)
    with path.open("wb") as fh:
        fh.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size >> 20):
            fh.write(mib)
        fh.write(gzip.compress(bytes(1024)))
    return path


@pytest.mark.parametrize(("limits", "says"), [
    (Limits(), "times its size, at most 100 (an archive bomb?)"),
    (Limits(ratio=1e9, member_bytes=1 << 30), "bomb/zeros.bin declares 2.0 GiB (2147483648 "
                                              "bytes); a file may hold at most 1.0 GiB"),
    (Limits(ratio=1e9, total_bytes=1 << 30), "declare 2.0 GiB in all; at most 1.0 GiB"),
])
def test_an_archive_bomb_is_refused_by_its_headers(tmp_path: Path, limits: Limits, says: str):
    bomb = write_zero_bomb(tmp_path / "bomb.tar.gz", 2 << 30)
    assert bomb.stat().st_size < 9 << 20
    dest = tmp_path / "dest"
    dest.mkdir()
    start = time.monotonic()
    with pytest.raises(BundleInvalid, match="refusing to extract") as info:
        extract(bomb, dest, limits)
    assert time.monotonic() - start < 0.5
    assert len(info.value.problems) == 1 and says in info.value.problems[0]
    assert list(dest.iterdir()) == []  # nothing extracted
    start = time.monotonic()
    with pytest.raises(BundleInvalid, match="refusing to extract"):
        verify(bomb)
    assert time.monotonic() - start < 0.5


def test_a_member_over_its_kinds_limit_is_refused_unread(bundle: Path, tmp_path: Path):
    limits = Limits(by_name={**LIMITS_BY_NAME, "result.json": 1024})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BundleInvalid, match="refusing to extract") as info:
        extract(bundle, dest, limits)
    (problem,) = info.value.problems
    assert re.fullmatch(r"too large: \S+/runs/\S+/result\.json declares \d+\.\d KiB \(\d+ "
                        r"bytes\); a result\.json may hold at most 1\.0 KiB", problem), problem
    assert list(dest.iterdir()) == []
    assert verify(bundle).runs_done == 7  # the default limits take this bundle


def test_a_file_over_its_kinds_limit_is_never_read(bundle: Path, tmp_path: Path):
    root = unpack(bundle, tmp_path / "x")
    run_id = a_done_run(root)
    rel = f"runs/{run_id}/result.json"
    with (root / rel).open("r+b") as fh:  # sparse: 4 GiB that no test could read quickly
        fh.truncate(4 << 30)
    start = time.monotonic()
    with pytest.raises(BundleInvalid) as info:
        verify_root(root)
    assert time.monotonic() - start < 30
    assert f"too large: {rel} is 4.0 GiB (4294967296 bytes); a result.json may hold at most " \
           "32.0 MiB" in info.value.problems
    assert "aggregates: not recomputed, because some files violate their schema or their size " \
           "limit" in info.value.problems
    with pytest.raises(BundleInvalid, match="result.json is too large"):
        read_bounded(root, rel)


def test_cli_verify_exit_codes(bundle: Path, tmp_path: Path):
    ok = subprocess.run([sys.executable, "-m", "harness.cli", "bundle", "verify", str(bundle)],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "verified" in ok.stdout
    root = unpack(bundle, tmp_path / "x")
    (root / "study.yaml").write_text((root / "study.yaml").read_text() + "\n")
    bad = repack(root, tmp_path / "t.tar.gz", update_sums=False)
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "bundle", "verify", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "COLUMNS": "300"})
    assert proc.returncode == 1
    assert "changed file: study.yaml" in proc.stderr


# -- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "kept"), [
    (f"HF_TOKEN={HF}", "HF_TOKEN="),
    (f"export AWS_SECRET_ACCESS_KEY='{AWS}'", "AWS_SECRET_ACCESS_KEY="),
    (f'{{"OPENAI_API_KEY": "{OPENAI}"}}', '"OPENAI_API_KEY": '),
    (f'{{"db_password": "{PASSWORD}"}}', '"db_password": '),
    (f"Authorization: Bearer {BEARER}", "Authorization: Bearer "),
    (f"token is {HF} here", "token is hf_"),
    ("MY_CREDENTIALS: tok-ab12cd34ef56", "MY_CREDENTIALS: "),
    ("curl https://x/y?api_key=tok-ab12cd34ef56&n=1", "?api_key="),
    (f"--hf-token={HF}", "--hf-token="),
])
def test_redact_text(text: str, kept: str):
    new, found = redact_text(text)
    assert found
    assert REDACTED in new and kept in new
    for secret in SECRETS:
        assert secret not in new


@pytest.mark.parametrize("text", [
    '"j_per_output_token": 0.25, "output_tokens": 4096',
    "j_per_output_token: no run has a value; no effect estimated",
    "TOKENIZERS_PARALLELISM=false PWD=/work HF_HUB_OFFLINE=1",
    '"tokenizers": "0.20.1", "keyring": "24.0"',
    "requests 64, tokens 4096, hf_cache=/models",
    "output_tokens=32 batch_size=8 precision=bf16 max_num_batched_tokens=4096",
])
def test_ordinary_text_is_left_alone(text: str):
    assert redact_text(text) == (text, [])


def test_secret_names():
    assert all(is_secret_name(n) for n in ("HF_TOKEN", "apiKey", "api_key", "DB_PASSWORD",
                                        "GOOGLE_APPLICATION_CREDENTIALS", "client-secret"))
    assert not any(is_secret_name(n) for n in ("output_tokens", "tokenizer", "keyring", "PWD"))


def test_no_secret_reaches_the_bundle(tmp_path: Path):
    env = {"HF_TOKEN": HF, "env": {"AWS_SECRET_ACCESS_KEY": AWS, "OPENAI_API_KEY": OPENAI,
                                   "DB_PASSWORD": PASSWORD, "PATH": "/usr/bin"},
           "note": f"logged in with {HF}"}
    study = make_study(tmp_path / "results", sweep={"batch_size": [1, 2]}, j_factors={},
                       cycles=2, extra_env=env)
    run = next((study / "runs").iterdir())
    (run / "container.log").write_text(
        f"HF_TOKEN={HF}\nexport MY_PASSWORD='{PASSWORD}'\nAuthorization: Bearer {BEARER}\n"
        "TOKENIZERS_PARALLELISM=false\n"
        "MY_CREDENTIALS: tok-ab12cd34ef56\n")
    made = create(study, tmp_path / "b.tar.gz", pip_freeze=False)
    assert made.redactions
    with tarfile.open(made.path, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            for secret in SECRETS:
                assert secret.encode() not in data, (member.name, secret)
            if member.name.endswith(".parquet"):
                import io
                text = pd.read_parquet(io.BytesIO(data)).to_csv()
                assert not any(s in text for s in SECRETS)
    root = unpack(made.path, tmp_path / "x")
    log = (root / "runs" / run.name / "container.log").read_text()
    assert "TOKENIZERS_PARALLELISM=false" in log  # not a secret, kept
    redactions = (root / "provenance" / "redactions.txt").read_text()
    assert f"runs/{run.name}/container.log\tHF_TOKEN" in redactions and HF not in redactions
    result = json.loads((root / "runs" / run.name / "result.json").read_text())
    assert result["environment"]["env"]["PATH"] == "/usr/bin"
    assert result["environment"]["env"]["DB_PASSWORD"] == REDACTED
    assert verify(made.path).runs_done == 4  # the redacted bundle is still consistent
    # the study folder itself was not touched
    assert HF in (run / "container.log").read_text()


BACKEND_INFO = {  # what a vLLM and a TensorRT-LLM result say about their engine: data
    "token_timing": "engine step outputs (DELTA), timestamped when handed to the agent",
    "engine_key": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "kv_cache_dtype": "auto", "tokenizer": "models/tiny", "max_tokens": 8,
    "prompts_sha256": "ab" * 32,
}


def test_result_fields_that_say_token_are_kept_and_each_redaction_is_listed(
        own_study: Path, tmp_path: Path):
    """Issue 16 item 7: token_timing is data; a redaction names its file and field, no value."""
    runs = sorted(p for p in (own_study / "runs").iterdir() if (p / "result.json").exists())
    for run in runs:
        path = run / "result.json"
        data = json.loads(path.read_text())
        data["backend_info"] = BACKEND_INFO
        path.write_text(json.dumps(data, indent=2))
    secret_run = runs[0]
    path = secret_run / "result.json"
    data = json.loads(path.read_text())
    data["environment"]["env"] = {"WANDB_KEY": PASSWORD, "PATH": "/usr/bin"}
    path.write_text(json.dumps(data, indent=2))
    (secret_run / "container.log").write_text(f"starting\nHF_TOKEN={HF}\n")
    made = harness_cli("bundle", "create", str(own_study), "-o", str(tmp_path / "b.tar.gz"))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "redacted 2 secret-looking values" in made.stdout
    root = unpack(tmp_path / "b.tar.gz", tmp_path / "x")
    for run in runs[1:]:  # no secret: byte for byte as the study wrote it
        rel = f"runs/{run.name}/result.json"
        assert (root / rel).read_bytes() == (run / "result.json").read_bytes()
    bundled = json.loads((root / "runs" / secret_run.name / "result.json").read_text())
    assert bundled["backend_info"] == BACKEND_INFO
    assert bundled["environment"]["env"] == {"WANDB_KEY": REDACTED, "PATH": "/usr/bin"}
    listed = (root / "provenance" / "redactions.txt").read_text().splitlines()
    assert [line for line in listed if not line.startswith("#")] == [
        f"runs/{secret_run.name}/container.log\tHF_TOKEN (line 2)",
        f"runs/{secret_run.name}/result.json\tenvironment.env.WANDB_KEY",
    ]
    assert verify(tmp_path / "b.tar.gz").runs_done == 7


def test_a_secret_in_a_binary_file_refuses_the_bundle(own_study: Path, tmp_path: Path):
    study = own_study
    run = next(p for p in (study / "runs").iterdir())
    (run / "dump.bin").write_bytes(b"\x00\x01" + HF.encode() + b"\x00")
    with pytest.raises(UserInputError, match="refusing to bundle"):
        create(study, tmp_path / "b.tar.gz", pip_freeze=False)
    assert not (tmp_path / "b.tar.gz").exists()


# -- reproduce helpers -----------------------------------------------------------------------


def test_sample_spreads_over_experiments(study: Path):
    from harness.analysis.table import load_plan

    plan = load_plan(study)
    chosen = sample_runs(plan, 4, seed=1)
    assert len(chosen) == 4
    assert len({r.experiment_id for r in chosen}) == 4
    assert [r.position for r in chosen] == sorted(r.position for r in chosen)
    assert sample_runs(plan, 4, seed=1) == chosen
    assert sample_runs(plan, None, seed=1) == list(plan.runs)


# -- reproduce through the local runner ------------------------------------------------------

TINY_STUDY = """
name: repro
description: Two batch sizes of a tiny random model, for the reproduce test.
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 1
  workload: {{num_prompts: 8, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.5, prefill_split: false}}
sweep:
  batch_size: [1, 2]
execution: {{cycles: 2, order: interleaved, timeout_s: 300, runner: {runner}}}
output_dir: {out}
"""


def harness_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=900, env={**os.environ, "COLUMNS": "250"},
    )


@pytest.mark.slow
def test_reproduce_a_sample_with_the_local_runner(tmp_path: Path):
    from harness.models import write_tiny_model

    model = write_tiny_model(tmp_path / "models" / "tiny")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(TINY_STUDY.format(model=model, runner="local", out=tmp_path / "results"))
    ran = harness_cli("study", "run", str(study_file))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Which choice matters most" in ran.stdout  # study run ends with the report
    (study_dir,) = (tmp_path / "results").iterdir()
    assert (study_dir / "report" / "report.html").exists()
    made = harness_cli("bundle", "create", str(study_dir), "-o", str(tmp_path / "b.tar.gz"))
    assert made.returncode == 0, made.stdout + made.stderr
    again = harness_cli("bundle", "reproduce", str(tmp_path / "b.tar.gz"), "--runs", "2",
                        "--runner", "local", "--output-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stdout + again.stderr
    out = again.stdout
    assert "Reproducing 2 of 4 runs" in out
    assert "Original vs reproduced" in out and "output tokens/s" in out
    (new_dir,) = (tmp_path / "again").iterdir()
    assert new_dir.name.startswith("repro-reproduce-")
    comparison = pd.read_csv(new_dir / "comparison.csv")
    assert len(set(comparison["experiment_id"])) == 2  # the sample covers both experiments
    tps = comparison[comparison["metric"] == "output_tokens_per_s"]
    assert (tps["ratio_new_to_original"] > 0).all()
    assert (tps["original_n"] == 2).all() and (tps["new_n"] == 1).all()
    assert set(tps["within_original_ci95"].dropna()) <= {True, False}
    energy = comparison[comparison["metric"] == "j_per_output_token"]
    assert energy["ratio_new_to_original"].isna().all()  # unknown stays unknown
