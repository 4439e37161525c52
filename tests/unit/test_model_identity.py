"""Model identity: where a model came from and a fingerprint of its files (real files)."""

import hashlib
import shutil
from pathlib import Path

import pytest

from harness.bundle.models import ModelPlace, Recorded, check_model
from harness.model_identity import (
    BLOCK_BYTES,
    FINGERPRINT_SCHEME,
    SAMPLE_BLOCKS,
    differences,
    hub_snapshot,
    hub_source,
    identify,
    identify_for_agent,
)
from harness.models import write_tiny_model
from harness.results.schema import ModelIdentity


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("m") / "tiny")


def copy_of(model: Path, dest: Path) -> Path:
    shutil.copytree(model, dest)
    return dest


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_copy_matches_and_documentation_does_not_count(tiny: Path, tmp_path: Path):
    recorded = identify("models/tiny", tiny, "fast")
    assert recorded.source == "folder" and recorded.ref == "models/tiny"
    names = {f.path for f in recorded.files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    copy = copy_of(tiny, tmp_path / "copy")
    (copy / "README.md").write_text("# my notes\n")
    (copy / ".cache").mkdir()
    (copy / ".cache" / "x.lock").write_text("")
    found = identify("models/tiny", copy, "fast")
    assert found.fingerprint == recorded.fingerprint and differences(recorded, found) == []


def test_fast_mode_samples_large_weights_and_hashes_small_files_whole(tiny: Path):
    fast = identify("t", tiny, "fast")
    full = identify("t", tiny, "full")
    by_name = {f.path: f for f in fast.files}
    weights = by_name["model.safetensors"]
    assert weights.bytes > SAMPLE_BLOCKS * BLOCK_BYTES and weights.sampled
    assert not by_name["config.json"].sampled
    assert {f.path: f.sha256 for f in full.files}["config.json"] == by_name["config.json"].sha256
    assert not any(f.sampled for f in full.files)
    assert fast.fingerprint != full.fingerprint
    assert differences(fast, full) == ["fingerprints of different modes (fast and full)"]


def test_a_changed_weight_file_is_caught(tiny: Path, tmp_path: Path):
    recorded = identify("models/tiny", tiny, "fast")
    other = write_tiny_model(tmp_path / "other", seed=1)  # same shapes, other weights
    found = identify("models/tiny", other, "fast")
    problems = differences(recorded, found)
    assert "changed file: model.safetensors" in " ".join(problems)
    assert problems[0].startswith("changed file: model.safetensors: SHA-256")


def test_one_changed_byte_is_caught_in_full_mode_and_in_fast_mode_only_when_sampled(
        tiny: Path, tmp_path: Path):
    weights_size = (tiny / "model.safetensors").stat().st_size
    step = (weights_size - BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    between = round(step) + BLOCK_BYTES + 10  # after the second block, before the third
    assert between < round(2 * step)
    copy = copy_of(tiny, tmp_path / "copy")
    flip_byte(copy / "model.safetensors", between)
    assert differences(identify("t", tiny, "full"), identify("t", copy, "full"))
    assert differences(identify("t", tiny, "fast"), identify("t", copy, "fast")) == []
    flip_byte(copy / "model.safetensors", round(5 * step) + 7)  # inside the sixth block
    assert differences(identify("t", tiny, "fast"), identify("t", copy, "fast"))


def test_missing_and_extra_files_are_named(tiny: Path, tmp_path: Path):
    copy = copy_of(tiny, tmp_path / "copy")
    (copy / "tokenizer.json").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"\0" * 10)
    problems = differences(identify("t", tiny, "fast"), identify("t", copy, "fast"))
    assert any(p.startswith("missing file: tokenizer.json") for p in problems)
    assert "extra file: pytorch_model.bin (10 bytes)" in problems


def test_a_hub_snapshot_records_its_id_and_revision(tiny: Path, tmp_path: Path):
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny-chat"
    snapshot = copy_of(tiny, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision + "\n")
    assert hub_snapshot(tmp_path / "hf", "acme/tiny-chat") == snapshot
    assert hub_snapshot(tmp_path / "hf" / "hub", "acme/tiny-chat") == snapshot
    assert hub_snapshot(tmp_path / "hf", "acme/other") is None
    assert hub_source(snapshot) == ("acme/tiny-chat", revision)
    identity = identify("acme/tiny-chat", snapshot, "fast")
    assert (identity.source, identity.hub_id, identity.revision) == (
        "hub", "acme/tiny-chat", revision)
    assert identity.fingerprint == identify("x", tiny, "fast").fingerprint  # files decide


def test_the_agent_records_a_model_it_cannot_read_with_a_note(tmp_path: Path):
    identity = identify_for_agent("models/gone", str(tmp_path / "gone"), "fast")
    assert identity.fingerprint is None and "not fingerprinted" in (identity.note or "")
    assert identity.ref == "models/gone"


def with_big_tokenizer(model: Path, dest: Path) -> Path:
    """A copy of ``model`` whose tokenizer.json is 2 MiB (as a large vocabulary's is)."""
    copy = copy_of(model, dest)
    body = b'{"model": {"vocab": "' + b"a" * (2 * 1024 * 1024 - 32) + b'"}}\n'
    (copy / "tokenizer.json").write_bytes(body)
    return copy


def test_fast_mode_hashes_a_large_tokenizer_whole_and_samples_only_weights(tiny: Path,
                                                                           tmp_path: Path):
    model = with_big_tokenizer(tiny, tmp_path / "big")
    (model / "extra.gguf").write_bytes(b"\1" * (3 * SAMPLE_BLOCKS * BLOCK_BYTES))
    recorded = identify("t", model, "fast")
    assert recorded.scheme == FINGERPRINT_SCHEME == 2
    by_name = {f.path: f for f in recorded.files}
    assert not by_name["tokenizer.json"].sampled and by_name["tokenizer.json"].bytes > 2e6
    assert by_name["model.safetensors"].sampled and by_name["extra.gguf"].sampled
    full = {f.path: f.sha256 for f in identify("t", model, "full").files}
    assert by_name["tokenizer.json"].sha256 == full["tokenizer.json"]
    size = (model / "tokenizer.json").stat().st_size
    flip_byte(model / "tokenizer.json", size // 2)  # between any blocks sampling would read
    found = identify("t", model, "fast")
    assert found.fingerprint != recorded.fingerprint
    assert differences(recorded, found)[0].startswith("changed file: tokenizer.json: SHA-256")


def old_sampled_sha256(path: Path) -> str:
    """A sampled entry as fast fingerprints before scheme 2 wrote it (size, then 16 blocks)."""
    data, digest = path.read_bytes(), hashlib.sha256()
    digest.update(str(len(data)).encode())
    step = (len(data) - BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    for i in range(SAMPLE_BLOCKS):
        digest.update(data[round(i * step):round(i * step) + BLOCK_BYTES])
    return digest.hexdigest()


def test_an_old_fast_fingerprint_is_checked_in_its_own_scheme(tiny: Path, tmp_path: Path):
    model = with_big_tokenizer(tiny, tmp_path / "big")
    old = identify("t", model, "fast", scheme=1).model_dump()
    del old["scheme"]  # results before schema 1.4 have no scheme
    recorded = ModelIdentity.model_validate(old)
    assert recorded.scheme == 1
    tokenizer = {f.path: f for f in recorded.files}["tokenizer.json"]
    assert tokenizer.sampled and tokenizer.sha256 == old_sampled_sha256(model / "tokenizer.json")
    now = identify("t", model, "fast")
    assert now.fingerprint != recorded.fingerprint  # the new scheme hashes the tokenizer whole
    assert differences(recorded, now) == [
        "fast fingerprints of different schemes (1 and 2: they sample different files); "
        "fingerprint the copy in the recorded scheme"]
    check = check_model(ModelPlace("t", model, "here"), [Recorded(recorded, ["r1"])])
    assert (check.status, check.detail) == ("match", [])
    assert "recorded fingerprint scheme 1, which sampled tokenizer.json" in (check.caveat or "")
    other = write_tiny_model(tmp_path / "other", seed=3)
    assert check_model(ModelPlace("t", other, "here"), [Recorded(recorded, ["r1"])]).status == (
        "mismatch")


def test_a_fingerprint_of_an_unknown_scheme_is_not_checked_and_says_why(tiny: Path):
    recorded = identify("t", tiny, "fast").model_copy(update={"scheme": 9})
    check = check_model(ModelPlace("t", tiny, "here"), [Recorded(recorded, ["r1"])])
    assert check.status == "not checked"
    assert "scheme 9, which this harness does not know (it knows 1, 2)" in check.detail[0]
    with pytest.raises(ValueError, match="fingerprint scheme 9"):
        identify("t", tiny, "fast", scheme=9)


def test_full_fingerprints_are_the_same_in_every_scheme(tiny: Path, tmp_path: Path):
    model = with_big_tokenizer(tiny, tmp_path / "big")
    one, two = identify("t", model, "full", scheme=1), identify("t", model, "full")
    assert one.fingerprint == two.fingerprint and differences(one, two) == []
