"""What travels in a bundle for a reviewer: image archives checked by id, prompt files with
their hashes, the source, the models' fingerprints; and reproduce's model checks."""

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from _synthetic import make_study
from typer.testing import CliRunner

from harness.bundle import BundleInvalid, Limits, create, extract, verify
from harness.bundle.carry import carry_workload, workload_files
from harness.bundle.images import archive_path, check_archive
from harness.bundle.models import Recorded, check_model, locate_models
from harness.bundle.reproduce import (
    Reproduction,
    ReviewerModels,
    _carry_prompts,
    carried_datasets,
    reproduce,
)
from harness.errors import UserInputError
from harness.model_identity import identify
from harness.models import write_tiny_model
from harness.results.events import Event, Note

SWEEP = {"batch_size": [1, 8]}
FAKE_ID = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "models" / "tiny")


def study_with_model(root: Path, tiny: Path, **kwargs) -> Path:
    """A synthetic study whose results record the fingerprint of ``tiny`` as models/tiny."""
    study = make_study(root / "results", sweep=SWEEP, j_factors={}, cycles=2,
                       working_dir=tiny.parent.parent, **kwargs)
    identity = identify("models/tiny", tiny, "fast").model_dump()
    for result in study.glob("runs/*/result.json"):
        data = json.loads(result.read_text())
        data["model"] = identity
        data["environment"]["harness_git_revision"] = "0" * 40  # not a commit of this repo
        result.write_text(json.dumps(data))
    return study


def refresh(root: Path, bundle: Path) -> Path:
    """Rewrite SHA256SUMS for every file and pack the folder again."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n"
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != "SHA256SUMS"]
    (root / "SHA256SUMS").write_text("".join(lines))
    with tarfile.open(bundle, "w:gz") as tar:
        tar.add(root, arcname=root.name)
    return bundle


# -- image archives --------------------------------------------------------------------------


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            _add(tar, name, data)
    return buf.getvalue()


def docker_save_archive(path: Path, layers: list[bytes], *, oci: bool = False,
                        tamper: bool = False) -> str:
    """An archive in ``docker save``'s layout (legacy, or OCI blobs with links); its id."""
    diff_ids = [hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers",
                                    "diff_ids": [f"sha256:{d}" for d in diff_ids]}}).encode()
    image_hex = hashlib.sha256(config).hexdigest()
    with tarfile.open(path, "w:gz") as tar:
        names = []
        for n, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            data = layer + b"x" if tamper and n == 0 else layer
            if oci:
                _add(tar, f"blobs/sha256/{diff_id}", data)
                link = tarfile.TarInfo(f"{n}/layer.tar")
                link.type, link.linkname = tarfile.SYMTYPE, f"../blobs/sha256/{diff_id}"
                tar.addfile(link)
            else:
                _add(tar, f"{n}/layer.tar", data)
            names.append(f"{n}/layer.tar")
        config_name = f"blobs/sha256/{image_hex}" if oci else f"{image_hex}.json"
        _add(tar, config_name, config)
        _add(tar, "manifest.json", json.dumps(
            [{"Config": config_name, "RepoTags": None, "Layers": names}]).encode())
    return f"sha256:{image_hex}"


def test_an_image_archive_is_known_by_its_id_and_every_layer(tmp_path: Path):
    layers = [layer_tar({"etc/os-release": b"debian\n"}), layer_tar({"app/x.py": os.urandom(9000)})]
    for oci in (False, True):
        path = tmp_path / f"image-{oci}.tar.gz"
        image_id = docker_save_archive(path, layers, oci=oci)
        found = check_archive(path)
        assert (found.image_id, found.layers, found.problems) == (image_id, 2, [])
    tampered = tmp_path / "tampered.tar.gz"
    image_id = docker_save_archive(tampered, layers, tamper=True)
    found = check_archive(tampered)
    assert found.image_id == image_id  # the config is intact ...
    assert found.problems and "layer 1" in found.problems[0]  # ... but a layer is not


def test_image_archives_pass_the_ratio_check_and_bombs_do_not(tmp_path: Path):
    limits = Limits(ratio=100.0, ratio_floor_bytes=1 << 20)
    code = tmp_path / "code.tar.gz"  # compiled code and wheels compress a few times at most
    docker_save_archive(code, [layer_tar({"lib.so": os.urandom(3 << 20)})])
    assert check_archive(code, limits).problems == []
    bomb = tmp_path / "bomb.tar.gz"
    docker_save_archive(bomb, [layer_tar({"zeros": bytes(64 << 20)})])
    (problem,) = check_archive(bomb, limits).problems
    assert "an archive bomb?" in problem


def test_verify_checks_each_carried_image_against_the_recorded_id(tmp_path: Path):
    study = make_study(tmp_path / "results", sweep=SWEEP, j_factors={}, cycles=2)
    layers = [layer_tar({"bin/agent": os.urandom(5000)})]
    image_id = docker_save_archive(tmp_path / "image.tar.gz", layers)
    manifest = json.loads((study / "manifest.json").read_text())
    for rec in manifest["runs"]:
        rec["image"] = {"tag": "harness/pytorch:cuda", "id": image_id, "digest": None}
    (study / "manifest.json").write_text(json.dumps(manifest))
    root = extract(create(study, tmp_path / "b.tar.gz", pip_freeze=False).path, tmp_path / "x")
    rel = archive_path(image_id)
    (root / rel).parent.mkdir()
    (root / rel).write_bytes((tmp_path / "image.tar.gz").read_bytes())
    prov_path = root / "provenance" / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["images"][0]["archives"] = [{"id": image_id, "file": rel, "bytes": 1}]
    prov_path.write_text(json.dumps(prov))
    checked = verify(refresh(root, tmp_path / "with-image.tar.gz"))
    assert any(f"holds {image_id}" in c and "1 layers" in c for c in checked.checks)

    docker_save_archive(root / rel, [layer_tar({"bin/agent": b"another build"})])
    problems = _problems(refresh(root, tmp_path / "other-image.tar.gz"))
    assert any(f"provenance.json says {image_id}" in p for p in problems)

    outside = tmp_path / "outside.tar.gz"  # a bundle names a file outside itself: never read
    outside.write_bytes((tmp_path / "image.tar.gz").read_bytes())
    prov["images"][0]["archives"] = [{"id": image_id, "file": "images/../../outside.tar.gz"}]
    prov_path.write_text(json.dumps(prov))
    problems = _problems(refresh(root, tmp_path / "escape.tar.gz"))
    assert any("missing file: images/../../outside.tar.gz" in p for p in problems)


def _problems(bundle: Path) -> list[str]:
    with pytest.raises(BundleInvalid) as info:
        verify(bundle)
    return info.value.problems


# -- prompt files ----------------------------------------------------------------------------


def test_prompt_files_travel_with_their_hash(tiny: Path, tmp_path: Path):
    work = tiny.parent.parent
    prompts = work / "prompts" / "chat.jsonl"
    prompts.parent.mkdir(exist_ok=True)
    prompts.write_text('{"prompt": "Why is the sky blue?"}\n')
    study = make_study(tmp_path / "results", sweep=SWEEP, j_factors={}, cycles=2,
                       working_dir=work, experiment={"workload": {
                           "dataset": "prompts/chat.jsonl", "num_prompts": 8,
                           "input_tokens": 16, "output_tokens": 8}})
    root = extract(create(study, tmp_path / "b.tar.gz", pip_freeze=False).path, tmp_path / "x")
    assert (root / "workload" / "prompts" / "chat.jsonl").read_bytes() == prompts.read_bytes()
    (entry,) = json.loads((root / "provenance" / "provenance.json").read_text())["workload"]
    assert entry["sha256"] == hashlib.sha256(prompts.read_bytes()).hexdigest()
    assert "`prompts/chat.jsonl`: `synth-20260101T000000Z/workload/prompts/chat.jsonl`" in (
        root / "REVIEWERS.md").read_text()
    assert any("prompt file prompts/chat.jsonl" in c for c in verify(tmp_path / "b.tar.gz").checks)
    new_dir = tmp_path / "reproduced"
    prov = json.loads((root / "provenance" / "provenance.json").read_text())
    moved, (note,) = _carry_prompts(carried_datasets(root, prov), root, new_dir)  # as named
    assert [d.path for d in moved] == [str(new_dir / "prompts" / "chat.jsonl")]
    assert (new_dir / "prompts" / "chat.jsonl").read_bytes() == prompts.read_bytes()
    assert str(new_dir / "prompts" / "chat.jsonl") in note

    (root / "workload" / "prompts" / "chat.jsonl").write_text('{"prompt": "Other."}\n')
    problems = _problems(refresh(root, tmp_path / "changed.tar.gz"))
    assert any("not the prompt file prompts/chat.jsonl the runs read" in p for p in problems)


def test_a_prompt_file_past_the_cap_is_named_and_hashed_not_carried(tmp_path: Path):
    big, small = tmp_path / "big.jsonl", tmp_path / "small.jsonl"
    big.write_text('{"prompt": "x"}\n' * 100)
    small.write_text('{"prompt": "y"}\n')
    assert workload_files(["synthetic", "big.jsonl", "small.jsonl", "big.jsonl"]) == [
        "big.jsonl", "small.jsonl"]
    entries, notes = carry_workload(["small.jsonl", "big.jsonl", "gone.jsonl"],
                                    lambda ref: tmp_path / ref, tmp_path / "root", max_bytes=1000)
    small_entry, big_entry, gone = entries
    assert small_entry["file"] == "workload/small.jsonl"
    assert big_entry["file"] is None and big_entry["sha256"]
    assert "past 1000 B; its SHA-256 is recorded" in big_entry["note"]
    assert gone["file"] is None and "not found" in gone["note"]
    assert len(notes) == 2


def test_a_prompt_file_holding_a_secret_refuses_the_bundle(tiny: Path, tmp_path: Path):
    work = tmp_path / "work"
    (work / "p.jsonl").parent.mkdir(parents=True)
    (work / "p.jsonl").write_text('{"prompt": "use hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123 now"}\n')
    study = make_study(tmp_path / "results", sweep=SWEEP, j_factors={}, cycles=1,
                       working_dir=work, experiment={"workload": {"dataset": "p.jsonl"}})
    with pytest.raises(UserInputError, match="refusing to bundle") as info:
        create(study, tmp_path / "b.tar.gz", pip_freeze=False)
    assert "workload/p.jsonl: carried as the runs read it" in str(info.value)


# -- the source and the models ---------------------------------------------------------------


def test_the_source_and_the_models_travel(tiny: Path, tmp_path: Path):
    study = study_with_model(tmp_path, tiny)
    root = extract(create(study, tmp_path / "b.tar.gz", pip_freeze=False).path, tmp_path / "x")
    prov = json.loads((root / "provenance" / "provenance.json").read_text())
    source = prov["source"]
    assert source["archive"].startswith("source/harness-") and source["revision"]
    assert any("is not in" in n for n in source["notes"])  # the runs' revision is unknown here
    with tarfile.open(root / source["archive"]) as tar:
        names = set(tar.getnames())
    folder = Path(source["archive"]).name.removesuffix(".tar.gz")
    assert {f"{folder}/pyproject.toml", f"{folder}/harness/model_identity.py"} <= names
    (model,) = prov["models"]
    assert model["ref"] == "models/tiny" and model["source"] == "folder"
    assert model["fingerprint"] == identify("models/tiny", tiny, "fast").fingerprint
    assert len(model["runs"]) == 4
    reviewers = (root / "REVIEWERS.md").read_text()
    assert f"tar xzf {root.name}/{source['archive']} && cd {folder}" in reviewers
    assert "git clone <the harness repository>" not in reviewers
    assert "--model models/tiny=/path/to/your/tiny" in reviewers
    assert "## 7. Read the comparison" in reviewers and "same_image" in reviewers


# -- reproduce: finding and checking the reviewer's model ------------------------------------


def test_models_are_found_by_mapping_root_and_the_studys_folder(tiny: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    work = tiny.parent.parent
    (place,) = locate_models(["models/tiny"], mapped={}, model_root=None, working_dir=work,
                             hf_cache=None)
    assert place.folder == tiny and "ran from" in place.why
    moved = write_tiny_model(tmp_path / "elsewhere" / "models" / "tiny")
    (place,) = locate_models(["models/tiny"], mapped={}, model_root=tmp_path / "elsewhere",
                             working_dir=work, hf_cache=None)
    assert place.folder == moved and place.why == "under --model-root"
    (place,) = locate_models(["/gone/tiny"], mapped={}, model_root=moved.parent,
                             working_dir=None, hf_cache=None)
    assert place.folder == moved  # an absolute name, by its last part
    (place,) = locate_models(["models/tiny"], mapped={"models/tiny": moved}, model_root=None,
                             working_dir=work, hf_cache=None)
    assert place.folder == moved and place.why.startswith("--model models/tiny=")
    with pytest.raises(UserInputError) as info:
        locate_models(["models/tiny", "./gone"], mapped={}, model_root=None,
                      working_dir=tmp_path / "nowhere", hf_cache=None)
    text = str(info.value)
    assert "--model NAME=PATH" in text and str(tmp_path / "nowhere" / "models" / "tiny") in text
    assert "./gone: looked at" in text


def test_a_hub_id_is_found_in_the_cache(tiny: Path, tmp_path: Path):
    revision = "c0ffee" * 6 + "c0ff"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny"
    (repo / "snapshots").mkdir(parents=True)
    (repo / "snapshots" / revision).symlink_to(tiny, target_is_directory=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (place,) = locate_models(["acme/tiny"], mapped={}, model_root=None, working_dir=tmp_path,
                             hf_cache=str(tmp_path / "hf"))
    assert place.folder is None and place.snapshot == repo / "snapshots" / revision
    recorded = [Recorded(identify("acme/tiny", tiny, "fast"), ["r1"])]
    assert check_model(place, recorded).status == "match"


def test_reproduce_refuses_another_model_before_anything_runs(tiny: Path, tmp_path: Path):
    study = study_with_model(tmp_path, tiny)
    bundle = create(study, tmp_path / "b.tar.gz", pip_freeze=False).path
    other = write_tiny_model(tmp_path / "other", seed=7)
    with pytest.raises(UserInputError) as info:
        reproduce(bundle, runs=1, runner="local", output_dir=tmp_path / "again",
                  models=ReviewerModels({"models/tiny": other}))
    text = str(info.value)
    assert "not the one the runs measured; nothing was started" in text
    assert "models/tiny: changed file: model.safetensors" in text
    assert "--accept-model-mismatch" in text
    assert not (tmp_path / "again").exists()


class RunsStarted(Exception):
    """Raised where the study's runs would start: the test has what it needs by then."""


def test_reproduce_says_its_notes_before_the_runs_start(tiny: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    from harness.controller.loop import StudyRun

    study = study_with_model(tmp_path, tiny)
    bundle = create(study, tmp_path / "b.tar.gz", pip_freeze=False).path
    events: list[Event] = []
    before_runs: list[Event] = []

    def execute(self: StudyRun) -> None:
        before_runs.extend(events)
        raise RunsStarted

    monkeypatch.setattr(StudyRun, "execute", execute)
    with pytest.raises(RunsStarted):
        reproduce(bundle, runs=1, runner="local", output_dir=tmp_path / "again",
                  observer=events.append)
    said = [e.message for e in before_runs if isinstance(e, Note)]
    assert f"model models/tiny: {tiny} (" in said[0] and said[0].endswith("fingerprint match")
    assert said[-2].startswith("Reproducing 1 of 4 runs")
    assert said[-1].startswith("Runner: local")


def test_the_reproduce_command_prints_each_note_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    from harness.cli import app

    def fake_reproduce(bundle: Path, *, observer, **_: object) -> Reproduction:
        observer(Note("loaded image sha256:ab from the bundle"))
        return Reproduction(tmp_path, pd.DataFrame(), ["loaded image sha256:ab from the bundle"],
                            0, 0)

    monkeypatch.setattr("harness.bundle.reproduce", fake_reproduce)
    result = CliRunner().invoke(app, ["bundle", "reproduce", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 0, result.output
    assert result.output.count("loaded image sha256:ab from the bundle") == 1


def test_a_gzip_layer_is_hashed_uncompressed(tmp_path: Path):
    layer = layer_tar({"a": b"abc" * 1000})
    path = tmp_path / "gz-layer.tar.gz"
    image_id = docker_save_archive(path, [layer])
    root = tmp_path / "x"
    root.mkdir()
    with tarfile.open(path) as tar:
        tar.extractall(root, filter="data")
    (root / "0" / "layer.tar").write_bytes(gzip.compress(layer))
    with tarfile.open(tmp_path / "regz.tar.gz", "w:gz") as tar:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(root).as_posix())
    found = check_archive(tmp_path / "regz.tar.gz")
    assert (found.image_id, found.problems) == (image_id, [])


def test_reviewers_are_never_told_to_clone_a_path_of_the_authors_machine():
    from harness.bundle.reviewers import _source_section

    src = {"archive": "source/harness-0123456789ab.tar.gz", "revision": "0123456789ab" * 3,
           "notes": []}
    local = "\n".join(_source_section("s", {"source": {**src, "remote": "/home/me/harness"}}))
    assert "git clone" not in local and "a path on the author's machine" in local
    assert "tar xzf s/source/harness-0123456789ab.tar.gz" in local
    served = "\n".join(_source_section(
        "s", {"source": {**src, "remote": "https://example.org/harness.git"}}))
    assert "git clone https://example.org/harness.git harness" in served


def test_a_hub_id_is_taken_at_the_revision_the_runs_recorded(tiny: Path, tmp_path: Path):
    # the reviewer's cache has moved on (refs/main names a newer snapshot) but still holds
    # the snapshot the runs measured: that one is used, as a folder the runs load exactly
    measured, newer = "a1" * 20, "b2" * 20
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny"
    (repo / "snapshots").mkdir(parents=True)
    (repo / "snapshots" / measured).symlink_to(tiny, target_is_directory=True)
    write_tiny_model(repo / "snapshots" / newer, seed=7)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(newer)
    find = dict(mapped={}, model_root=None, working_dir=tmp_path, hf_cache=str(tmp_path / "hf"))
    (place,) = locate_models(["acme/tiny"], revisions={"acme/tiny": measured}, **find)
    assert place.folder == place.snapshot == repo / "snapshots" / measured
    assert "recorded revision" in place.why
    recorded = [Recorded(identify("acme/tiny", repo / "snapshots" / measured, "fast"), ["r1"])]
    assert check_model(place, recorded).status == "match"
    # without it in the cache: refs/main, said so, and the fingerprint check tells them apart
    (repo / "snapshots" / measured).unlink()
    (place,) = locate_models(["acme/tiny"], revisions={"acme/tiny": measured}, **find)
    assert place.folder is None and place.snapshot == repo / "snapshots" / newer
    assert f"the recorded revision {measured[:12]} is not in the cache" in place.why
    assert check_model(place, recorded).status == "mismatch"
