"""Resume, recovery and the run-outcome rules, on real study folders (no runs are started)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from _synthetic import make_study

from harness.controller.lifecycle import resume_study
from harness.controller.loop import RESERVE
from harness.controller.outcome import EXIT_STORAGE, classify
from harness.controller.runtimes.base import RunOutcome
from harness.errors import StorageProblem, UserInputError
from harness.results import manifest as mio
from harness.results.io import atomic_write_text
from harness.secrets import REDACTED, Scrubber, forwarded_env, secret_values

SWEEP = {"batch_size": [1, 2]}


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A study of 2 experiments x 2 cycles: 2 runs done, 1 failed, 1 never run."""
    return make_study(tmp_path, sweep=SWEEP, j_factors={}, cycles=2, failed=1, pending=1,
                      with_model=True)


def statuses(study_dir: Path) -> dict[str, str]:
    return {r.run_id: r.status for r in mio.load(study_dir).runs}


def test_resume_runs_what_is_not_done(study_dir):
    prepared = resume_study(study_dir)
    todo = {r.run_id for r in prepared.run.pending()}
    assert todo == {k for k, v in statuses(study_dir).items() if v != "done"}
    assert len(todo) == 2
    assert "resuming: 2 runs done and kept, 2 to run" in prepared.notes
    assert prepared.run.runtime.name == "local"  # the runner the study began with


def test_keep_failed(study_dir):
    prepared = resume_study(study_dir, keep_failed=True)
    assert [statuses(study_dir)[r.run_id] for r in prepared.run.pending()] == ["pending"]


def changed_copy(study_dir: Path, tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load((study_dir / "study.yaml").read_text())
    for key, value in changes.items():
        data[key] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_changed_study_is_refused_with_the_differences(study_dir, tmp_path):
    changed = changed_copy(study_dir, tmp_path, sweep={"batch_size": [1, 4]},
                           execution={"cycles": 2, "order": "interleaved", "runner": "local",
                                      "timeout_s": 60})
    manifest = (study_dir / "manifest.json").read_text()
    with pytest.raises(UserInputError) as e:
        resume_study(study_dir, file=changed)
    text = str(e.value)
    assert "refusing to resume" in text and "--force" in text
    assert "-  - 2" in text and "+  - 4" in text  # the text diff
    assert "is no longer planned" in text and "is new" in text  # what it does to the plan
    assert "execution.timeout_s: 1800.0 -> 60.0" in text
    assert (study_dir / "manifest.json").read_text() == manifest  # nothing touched


def test_forced_change_keeps_what_still_applies(study_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --file: its model path is read from the working folder
    before = mio.load(study_dir)
    changed = changed_copy(study_dir, tmp_path, sweep={"batch_size": [1, 4]})
    prepared = resume_study(study_dir, file=changed, force=True)
    after = mio.load(study_dir)
    kept = {r.run_id: r for r in before.runs if r.run_id in {x.run_id for x in after.runs}}
    assert kept and all(after.record(k).status == r.status for k, r in kept.items())
    dropped = [r for r in before.runs if r.run_id not in kept]
    assert dropped and all(r.status == "pending" for r in after.runs if r.run_id not in kept)
    for rec in dropped:
        if rec.status != "pending":
            assert (study_dir / "runs" / ".attempts" / f"{rec.run_id}-dropped").is_dir()
        assert not (study_dir / "runs" / rec.run_id).exists()
    assert [r.position for r in after.runs] == list(range(len(after.runs)))
    assert (study_dir / "study.previous-1.yaml").is_file()
    assert (study_dir / "plan.previous-1.json").is_file()
    assert after.study_file_sha256 == mio.sha256_file(changed)
    assert any("is no longer planned" in n for n in prepared.notes)
    again = resume_study(study_dir, file=changed)  # now it is the study's own file
    assert {r.run_id for r in again.run.pending()} == {
        r.run_id for r in after.runs if r.status != "done"}


def test_comment_only_change_is_not_a_change(study_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # --file: its model path is read from the working folder
    changed = tmp_path / "commented.yaml"
    changed.write_text("# a comment\n" + (study_dir / "study.yaml").read_text())
    prepared = resume_study(study_dir, file=changed)
    assert any("only in comments or layout" in n for n in prepared.notes)


def test_edited_copy_in_the_folder_is_refused(study_dir):
    copy = study_dir / "study.yaml"
    copy.write_text(copy.read_text().replace("cycles: 2", "cycles: 3"))
    with pytest.raises(UserInputError, match="refusing to resume") as e:
        resume_study(study_dir)
    assert "execution.cycles: 2 -> 3" in str(e.value)


def test_another_study_is_refused(study_dir, tmp_path):
    other = changed_copy(study_dir, tmp_path, name="other")
    with pytest.raises(UserInputError, match="is not the study in"):
        resume_study(study_dir, file=other, force=True)


def test_not_a_study_folder(tmp_path):
    with pytest.raises(UserInputError, match="no manifest.json"):
        resume_study(tmp_path)


def test_a_running_controller_holds_the_study(study_dir):
    with mio.StudyLock(study_dir):
        assert mio.is_running(study_dir)
        with pytest.raises(UserInputError, match="another controller is running this study"):
            resume_study(study_dir)
        second = mio.StudyLock(study_dir)
        assert not second.try_acquire()
        assert f"pid {os.getpid()}" in (second.holder() or "")
    assert not mio.is_running(study_dir)


def set_status(study_dir: Path, run_id: str, status: str) -> None:
    manifest = mio.load(study_dir)
    manifest.record(run_id).status = status
    mio.save(manifest, study_dir)


def test_recovery_keeps_a_completely_written_result(study_dir):
    done = [k for k, v in statuses(study_dir).items() if v == "done"][0]
    set_status(study_dir, done, "running")  # the controller died before it saw the result
    prepared = resume_study(study_dir)
    prepared.run.recover()
    rec = mio.load(study_dir).record(done)
    assert rec.status == "done" and "completely written" in (rec.message or "")
    assert done not in {r.run_id for r in prepared.run.pending()}


def test_recovery_sets_a_half_run_aside(study_dir):
    victim = [k for k, v in statuses(study_dir).items() if v == "done"][0]
    set_status(study_dir, victim, "running")
    result = study_dir / "runs" / victim / "result.json"
    result.write_text(result.read_text()[:200])  # as if the agent died mid-write
    prepared = resume_study(study_dir)
    prepared.run.recover()
    rec = mio.load(study_dir).record(victim)
    assert (rec.status, rec.reason) == ("interrupted", "controller_lost")
    aside = study_dir / "runs" / ".attempts" / f"{victim}-attempt0"
    assert json.loads((aside / "error.json").read_text())["reason"] == "controller_lost"
    assert not (study_dir / "runs" / victim).exists()
    assert victim in {r.run_id for r in prepared.run.pending()}


def test_recovery_notices_a_lost_result(study_dir):
    victim = [k for k, v in statuses(study_dir).items() if v == "done"][0]
    (study_dir / "runs" / victim / "result.json").unlink()
    prepared = resume_study(study_dir)
    prepared.run.recover()
    rec = mio.load(study_dir).record(victim)
    assert (rec.status, rec.reason) == ("failed", "result_lost")


def test_reserve_is_held_and_freed(study_dir):
    run = resume_study(study_dir).run
    run._hold_reserve()
    assert (study_dir / RESERVE).stat().st_size >= 256 * 1024
    with pytest.raises(StorageProblem, match="harness study resume"):
        run._storage_stop(None, StorageProblem("cannot write x: No space left on device"))
    assert not (study_dir / RESERVE).exists()
    assert mio.load(study_dir).state == "aborted"


# -- what a run's outcome means ----------------------------------------------------------------


def run_dir_with(study_dir: Path, content: str | None, name: str | None = None) -> Path:
    done = [k for k, v in statuses(study_dir).items() if v == "done"][0]
    run_dir = study_dir / "runs" / (name or done)
    if name:
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_text((study_dir / "runs" / done / "result.json").read_text())
    if content is not None:
        (run_dir / "result.json").write_text(content)
    return run_dir


def test_a_valid_result_is_done_whatever_the_exit_code(study_dir):
    run_dir = run_dir_with(study_dir, None)
    result, reason, _ = classify(run_dir, RunOutcome(exit_code=137, duration_s=1, killed=True))
    assert result is not None and reason is None  # done: no failure reason


def test_a_truncated_result_is_never_done(study_dir):
    run_dir = run_dir_with(study_dir, None)
    text = (run_dir / "result.json").read_text()
    (run_dir / "result.json").write_text(text[: len(text) // 2])
    result, reason, message = classify(run_dir, RunOutcome(exit_code=0, duration_s=1))
    assert result is None and reason == "result_invalid" and "does not validate" in message


def test_a_result_of_another_run_is_not_this_runs(study_dir):
    run_dir = run_dir_with(study_dir, None, name="0000000000-c9")
    result, reason, message = classify(run_dir, RunOutcome(exit_code=0, duration_s=1))
    assert result is None and reason == "result_invalid" and "belongs to run" in message


@pytest.mark.parametrize(("outcome", "interrupted", "reason"), [
    (RunOutcome(exit_code=EXIT_STORAGE, duration_s=1), False, "storage_error"),
    (RunOutcome(exit_code=137, duration_s=9, timed_out=True), False, "timeout"),
    (RunOutcome(exit_code=137, duration_s=1, oom_killed=True, killed=True), False, "out_of_memory"),
    (RunOutcome(exit_code=137, duration_s=1, killed=True), False, "killed"),
    (RunOutcome(exit_code=130, duration_s=1), True, "interrupted"),
    (RunOutcome(exit_code=None, duration_s=0, reason="image_missing", error="no image"), False,
     "image_missing"),
    (RunOutcome(exit_code=0, duration_s=1), False, "result_missing"),
    (RunOutcome(exit_code=3, duration_s=1), False, "agent_exit"),
])
def test_failure_reasons(tmp_path, outcome, interrupted, reason):
    run_dir = tmp_path / "r-c1"
    run_dir.mkdir()
    assert classify(run_dir, outcome, interrupted=interrupted)[1] == reason


# -- secrets -----------------------------------------------------------------------------------


def test_only_the_hugging_face_token_is_forwarded():
    env = {"HF_TOKEN": "hf_abcdefghijklmnop", "AWS_SECRET_ACCESS_KEY": "x" * 20, "HOME": "/root"}
    assert forwarded_env(env) == {"HF_TOKEN": "hf_abcdefghijklmnop"}
    assert set(secret_values(env)) == {"hf_abcdefghijklmnop", "x" * 20}
    assert secret_values({"API_KEY": "short"}) == []


def test_scrubber_rewrites_only_files_holding_a_secret(tmp_path):
    scrub = Scrubber(["hf_abcdefghijklmnop"])
    log = tmp_path / "container.log"
    log.write_text("token=hf_abcdefghijklmnop\n")
    clean = tmp_path / "result.json"
    atomic_write_text(clean, '{"ok": true}\n')
    mtime = clean.stat().st_mtime_ns
    assert scrub.run_dir(tmp_path) == ["container.log"]
    assert log.read_text() == f"token={REDACTED}\n"
    assert clean.stat().st_mtime_ns == mtime
    assert scrub.text("a hf_abcdefghijklmnop b") == f"a {REDACTED} b"


def test_ctrl_c_during_a_gap_stops_at_once(tmp_path, monkeypatch):
    import signal
    import threading
    import time

    from harness.controller.lifecycle import start_study
    from harness.errors import Interrupted

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.yaml"
    path.write_text("name: gap\nexperiment: {model: ./not-here, device: cpu}\n"
                    "sweep: {batch_size: [1, 2, 3]}\n"
                    f"execution: {{gap_s: 600, runner: local}}\noutput_dir: {tmp_path / 'out'}\n")
    folder = tmp_path / "not-here"  # a model folder at the start (the checks pass), then gone
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    prepared = start_study(path)
    shutil.rmtree(folder)
    first = prepared.run.plan.runs[0].run_id
    # what the process had before (SIG_IGN, not Python's default, when started in the background)
    before = signal.getsignal(signal.SIGINT)

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if mio.load(prepared.study_dir).record(first).status == "failed":
                break
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(Interrupted, match="harness study resume"):
        prepared.run.execute()
    assert time.monotonic() - started < 20  # not the 600 s gap
    manifest = mio.load(prepared.study_dir)
    assert manifest.state == "interrupted" and "by SIGINT" in manifest.message
    assert [r.status for r in manifest.runs] == ["failed", "pending", "pending"]
    assert manifest.record(first).reason == "model_not_found"
    assert signal.getsignal(signal.SIGINT) == before  # handlers restored
