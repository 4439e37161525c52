"""Which images a study needs: keep tags, the manifests prune reads, and its decisions.

The engine side (tagging, removing) runs against a real engine in
tests/integration/test_reviewer_flow.py.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import docker
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.controller.images.retention import (
    KEEP_REPOSITORY,
    _decide,
    keep_tag,
    prune,
    referenced_images,
    study_dir_of,
)
from harness.errors import UserInputError
from harness.results.reasons import ExitCode

A = "sha256:" + "a1" * 32
B = "sha256:" + "b2" * 32


def a_study(root: Path, name: str, images: list[str | None]) -> Path:
    study = root / name
    (study / "runs").mkdir(parents=True)
    runs = [{"run_id": f"r{i}", "image": {"tag": "harness/pytorch:cpu", "id": image}
             if image else None} for i, image in enumerate(images)]
    (study / "manifest.json").write_text(json.dumps({"runs": runs}))
    return study


def test_a_keep_tag_names_the_image_and_the_study():
    tag = keep_tag(A, Path("/r/demo-20260101T000000Z"))
    assert tag == f"{KEEP_REPOSITORY}:{'a1' * 6}-demo-20260101T000000Z"
    long = keep_tag(A, Path("x" * 300 + " weird name"))
    assert len(long.split(":", 1)[1]) == 128
    assert keep_tag(A, Path("/r/..")).endswith("-study")


def test_the_study_of_a_run_folder(tmp_path: Path):
    study = a_study(tmp_path, "s-1", [A])
    run = study / "runs" / "r0"
    run.mkdir()
    assert study_dir_of(run) == study
    single = tmp_path / "single" / "exp-stamp"
    single.mkdir(parents=True)
    assert study_dir_of(single) is None  # a single run has no manifest: not kept


def test_prune_reads_every_study_under_the_folders(tmp_path: Path):
    one = a_study(tmp_path / "results", "one", [A, A, None])
    two = a_study(tmp_path / "results", "two", [B])
    nested = a_study(tmp_path / "results" / "again", "three", [A])
    (tmp_path / "results" / "broken").mkdir()
    (tmp_path / "results" / "broken" / "manifest.json").write_text("{not json")
    found = referenced_images([tmp_path / "results", tmp_path / "missing"])
    assert found.images == {A: [nested, one], B: [two]}
    assert found.manifests == [nested / "manifest.json", one / "manifest.json",
                               two / "manifest.json"]
    assert len(found.unreadable) == 1 and "broken" in found.unreadable[0]


@dataclass
class Image:
    id: str
    tags: list[str] = field(default_factory=list)


def test_prune_keeps_what_a_study_or_a_tag_holds_and_removes_the_rest(tmp_path: Path):
    refs = {A: [tmp_path / "one"]}
    kept = _decide(Image(A, [keep_tag(A, tmp_path / "one")]), refs)
    assert kept.action == "keep" and kept.reason == f"used by {tmp_path / 'one'}"
    current = _decide(Image(B, ["harness/pytorch:cpu", keep_tag(B, tmp_path / "old")]), refs)
    assert current.action == "keep" and "tagged harness/pytorch:cpu" in current.reason
    stale = _decide(Image(B, [keep_tag(B, tmp_path / "old")]), refs)
    assert stale.action == "remove" and "studies not in these folders" in stale.reason
    dangling = _decide(Image(B), refs)
    assert dangling.action == "remove" and "untagged (left by a rebuild)" in dangling.reason


def fake_engine(images: dict[str, list[str]]) -> mock.Mock:
    """A docker client (autospec) whose engine holds ``images`` (id -> tags), all keep-tagged."""
    client = mock.create_autospec(docker.DockerClient, instance=True)
    client.images = mock.create_autospec(docker.models.images.ImageCollection, instance=True)
    held = []
    for image_id, tags in images.items():
        image = mock.create_autospec(docker.models.images.Image, instance=True)
        image.id, image.tags = image_id, tags
        held.append(image)
    client.images.list.side_effect = lambda **kw: [] if "filters" in kw else held
    return client


def test_prune_that_read_no_manifest_refuses_to_remove_keep_tagged_images(tmp_path: Path):
    engine = fake_engine({A: [keep_tag(A, tmp_path / "one")], B: []})
    with pytest.raises(UserInputError) as info:
        prune(engine, [tmp_path / "results"])
    text = str(info.value)
    assert "no study manifest was read" in text and "nothing was removed" in text
    assert f"{tmp_path / 'results'}/*/manifest.json (no such folder)" in text
    assert "--results DIR" in text and "--force" in text and keep_tag(A, tmp_path / "one") in text
    assert info.value.exit_code == ExitCode.USAGE
    engine.images.remove.assert_not_called()

    dry = prune(engine, [tmp_path / "results"], dry_run=True)
    assert [d.action for d in dry.decisions] == ["remove", "remove"] and dry.manifests == []
    engine.images.remove.assert_not_called()
    forced = prune(engine, [tmp_path / "results"], force=True)
    assert [d.action for d in forced.decisions] == ["remove", "remove"]
    engine.images.remove.assert_has_calls([mock.call(keep_tag(A, tmp_path / "one")),
                                           mock.call(B)])


def test_prune_that_read_a_manifest_removes_stale_keep_tags(tmp_path: Path):
    a_study(tmp_path / "results", "one", [A])
    engine = fake_engine({A: [keep_tag(A, tmp_path / "results" / "one")],
                          B: [keep_tag(B, tmp_path / "gone")]})
    pruned = prune(engine, [tmp_path / "results"])
    assert [d.action for d in pruned.decisions] == ["keep", "remove"]
    engine.images.remove.assert_called_once_with(keep_tag(B, tmp_path / "gone"))


def test_only_untagged_builds_are_removed_without_a_manifest(tmp_path: Path):
    engine = fake_engine({B: []})
    assert [d.action for d in prune(engine, [tmp_path / "results"]).decisions] == ["remove"]
    engine.images.remove.assert_called_once_with(B)


def test_the_prune_command_refuses_with_the_input_exit_code(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    engine = fake_engine({A: [keep_tag(A, tmp_path / "one")]})
    monkeypatch.setattr("harness.controller.runtimes.docker.connect", lambda: engine)
    monkeypatch.chdir(tmp_path)
    refused = CliRunner().invoke(app, ["images", "prune"])
    assert isinstance(refused.exception, UserInputError)
    assert refused.exception.exit_code == ExitCode.USAGE
    engine.images.remove.assert_not_called()
    dry = CliRunner().invoke(app, ["images", "prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "no study manifest was read" in dry.output and "would remove" in dry.output
    forced = CliRunner().invoke(app, ["images", "prune", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "1 kept, 0 removed" not in forced.output and "0 kept, 1 removed" in forced.output
