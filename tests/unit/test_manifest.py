import json
import os
from pathlib import Path

import pytest

from harness.config.study import Study
from harness.config.sweep import expand
from harness.errors import EnvironmentProblem
from harness.results import manifest as mio
from harness.results.io import atomic_write_text


def make_manifest(tmp_path: Path):
    study_file = tmp_path / "s.yaml"
    study_file.write_text("x")
    plan = expand(Study.model_validate(
        {"name": "t", "experiment": {"model": "m", "device": "cpu"},
         "sweep": {"batch_size": [1, 2]}, "execution": {"cycles": 2}}))
    return mio.new_manifest(plan, study_file)


def test_new_manifest_has_every_run_pending(tmp_path):
    m = make_manifest(tmp_path)
    assert len(m.runs) == 4 and {r.status for r in m.runs} == {"pending"}


def test_save_and_load_round_trip(tmp_path):
    m = make_manifest(tmp_path)
    m.runs[0].status = "done"
    mio.save(m, tmp_path)
    again = mio.load(tmp_path)
    assert again.runs[0].status == "done"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_keeps_old_content_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    atomic_write_text(target, '{"old": true}')

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(EnvironmentProblem, match="No space left"):
        atomic_write_text(target, '{"new": true}')
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_atomic_write_replaces_by_rename(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    calls = []
    real = os.replace

    def spy(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_text(target, "1")
    assert calls and calls[0][1] == "f.json" and calls[0][0].startswith(".f.json.")
