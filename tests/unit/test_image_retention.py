"""Which images a study needs: keep tags, the manifests prune reads, and its decisions.

The engine side (tagging, removing) runs against a real engine in
tests/integration/test_reviewer_flow.py.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.controller.images.retention import (
    KEEP_REPOSITORY,
    _decide,
    keep_tag,
    referenced_images,
    study_dir_of,
)

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
    refs, unreadable = referenced_images([tmp_path / "results", tmp_path / "missing"])
    assert refs == {A: [nested, one], B: [two]}
    assert len(unreadable) == 1 and "broken" in unreadable[0]


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
