"""A reviewer's flow end to end in real containers, sharing one study and one image save.

An author runs a study in an image of its own (built from harness/pytorch:cpu with a label,
so that this test can rebuild and remove it without touching the shared tag); a rebuild moves
the tag; a bundle without images is reproduced in the original image (kept by its keep tag);
a bundle with the image is made; the image is removed and the model moved; the reviewer
verifies and reproduces two runs from another folder with the model mapped: the image is
loaded from the bundle and used by id, the model's fingerprint matches, the new figures land
in the prediction interval. A different model is refused, and recorded when accepted.
Prune keeps what a study uses and removes an untagged build (only this test's images).

Marked slow: it saves, verifies and loads a ~1.8 GB image (about 600 MB compressed).
"""

import io
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from harness.model_identity import identify
from harness.models import write_tiny_model

REPO = Path(__file__).resolve().parents[2]
LABEL = "harness.test.reviewer"

STUDY = """
name: reviewer-flow
description: Two batch sizes of a tiny random model, for a reviewer.
experiment:
  model: models/tiny
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 1
  workload: {{num_prompts: 8, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 0.5, prefill_split: false}}
sweep:
  batch_size: [1, 2]
execution: {{cycles: 2, order: interleaved, timeout_s: 300, runner: docker}}
images: {{pytorch: {image}}}
output_dir: results
"""

TIMES: dict[str, float] = {}


def harness_cli(*args: str, cwd: Path, step: str | None = None) -> subprocess.CompletedProcess[str]:
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=cwd,
        timeout=1200, env={**os.environ, "COLUMNS": "250"},
    )
    if step:
        TIMES[step] = time.monotonic() - began
    return proc


def build_variant(client, base_id: str, tag: str, run_label: str, build: int) -> str:
    dockerfile = f"FROM {base_id.split(':', 1)[1]}\nLABEL {LABEL}={run_label} build={build}\n"
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return image.id


@pytest.fixture
def own_images(docker_client):
    """This test's images (by label); removed with all their tags at the end."""
    run_label = uuid.uuid4().hex[:12]
    yield run_label
    for image in docker_client.images.list(filters={"label": f"{LABEL}={run_label}"}):
        try:
            docker_client.images.remove(image.id, force=True)
        except Exception:  # noqa: BLE001 - gone already
            pass


def only_study(folder: Path) -> Path:
    (study,) = [p for p in folder.iterdir() if p.is_dir()]
    return study


@pytest.mark.docker
@pytest.mark.slow
def test_a_reviewer_reproduces_in_the_exact_image_with_a_verified_model(
    docker_client, own_images: str, tmp_path: Path
) -> None:
    import docker.errors

    from harness.controller.images import build_image
    from harness.controller.images.retention import KEEP_REPOSITORY, keep_tag, prune

    base = build_image("pytorch", "cpu", offline=True, repo_root=REPO, client=docker_client)
    tag = f"harness-test/reviewer-{own_images}:cpu"
    image_a = build_variant(docker_client, base.id, tag, own_images, 1)
    author, reviewer = tmp_path / "author", tmp_path / "reviewer"
    model = write_tiny_model(author / "models" / "tiny")
    reviewer.mkdir()
    (author / "study.yaml").write_text(STUDY.format(image=tag))

    # the author's study: each result records the model; the image gets a keep tag
    ran = harness_cli("study", "run", "study.yaml", cwd=author, step="study run (4 runs)")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    study = only_study(author / "results")
    manifest = json.loads((study / "manifest.json").read_text())
    assert {r["image"]["id"] for r in manifest["runs"]} == {image_a}
    recorded = identify("models/tiny", model, "fast")
    for result in study.glob("runs/*/result.json"):
        identity = json.loads(result.read_text())["model"]
        assert (identity["ref"], identity["source"], identity["folder"]) == (
            "models/tiny", "folder", "/model")
        assert identity["fingerprint"] == recorded.fingerprint
    assert keep_tag(image_a, study) in docker_client.images.get(image_a).tags

    # a rebuild moves the tag; the study's image stays, held by its keep tag
    image_b = build_variant(docker_client, base.id, tag, own_images, 2)
    assert image_b != image_a
    assert docker_client.images.get(image_a).tags == [keep_tag(image_a, study)]
    plain = author / "plain.tar.gz"
    made = harness_cli("bundle", "create", str(study), "-o", str(plain), "--no-pip-freeze",
                       cwd=author, step="bundle create (without images)")
    assert made.returncode == 0, made.stdout + made.stderr
    again = harness_cli("bundle", "reproduce", str(plain), "--runs", "1", "--output-dir",
                        str(author / "after-rebuild"), cwd=author,
                        step="bundle reproduce --runs 1 (image present by id)")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"using the original image {tag} ({image_a[:19]}), by id" in again.stdout
    after = json.loads((only_study(author / "after-rebuild") / "manifest.json").read_text())
    assert {r["image"]["id"] for r in after["runs"]} == {image_a}

    # prune keeps what a study uses and what a tag holds, and removes an untagged build
    image_c = build_variant(docker_client, base.id, f"{tag}-c", own_images, 3)
    build_variant(docker_client, base.id, f"{tag}-c", own_images, 4)  # C is left untagged
    assert docker_client.images.get(image_c).tags == []
    roots = [author / "results", author / "after-rebuild"]
    pruned = prune(docker_client, roots, label=f"{LABEL}={own_images}")
    actions = {d.image_id: (d.action, d.reason) for d in pruned.decisions}
    assert actions[image_a][0] == "keep" and str(study) in actions[image_a][1]
    assert actions[image_b] == ("keep", f"tagged {tag} (the current build; remove it with "
                                        "docker rmi)")
    assert actions[image_c][0] == "remove"
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_c)
    docker_client.images.get(image_a)
    dry = harness_cli("images", "prune", "--dry-run", "--results", str(author / "results"),
                      cwd=author)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"{author / 'results'}/*/manifest.json" in dry.stdout
    assert f"keep {image_a[:19]}" in dry.stdout

    # the bundle with its image
    bundle = author / "study.tar.gz"
    made = harness_cli("bundle", "create", str(study), "-o", str(bundle), "--with-images",
                       "--no-pip-freeze", cwd=author, step="bundle create --with-images")
    assert made.returncode == 0, made.stdout + made.stderr
    sizes = {"without images": plain.stat().st_size, "with images": bundle.stat().st_size}

    # the reviewer's machine: no image, the model elsewhere, another folder
    for kept in docker_client.images.get(image_a).tags:
        docker_client.images.remove(kept)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_a)
    theirs = reviewer / "weights" / "tiny-copy"
    shutil.move(model, theirs)
    shutil.move(bundle, reviewer / bundle.name)
    bundle = reviewer / bundle.name

    checked = harness_cli("bundle", "verify", bundle.name, cwd=reviewer,
                          step="bundle verify (with images)")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"holds {image_a} (its config and" in checked.stdout

    lost = harness_cli("bundle", "reproduce", bundle.name, "--runs", "2", cwd=reviewer)
    assert lost.returncode == 2, lost.stdout + lost.stderr
    assert "models not found on this machine; nothing was started" in lost.stderr + lost.stdout
    assert str(author / "models" / "tiny") in lost.stderr + lost.stdout
    assert not (reviewer / "results").exists()

    again = harness_cli("bundle", "reproduce", bundle.name, "--runs", "2", "--model",
                        "models/tiny=weights/tiny-copy", cwd=reviewer,
                        step="bundle reproduce --runs 2 (load image)")
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    assert f"loaded image {image_a[:19]} from the bundle" in out
    assert f"using the original image {tag} ({image_a[:19]}), by id" in out
    assert "fingerprint match" in out
    new = only_study(reviewer / "results")
    new_manifest = json.loads((new / "manifest.json").read_text())
    assert [r["status"] for r in new_manifest["runs"]] == ["done", "done"]
    assert {r["image"]["id"] for r in new_manifest["runs"]} == {image_a}
    for result in new.glob("runs/*/result.json"):
        assert json.loads(result.read_text())["model"]["fingerprint"] == recorded.fingerprint
    comparison = pd.read_csv(new / "comparison.csv")
    tps = comparison[comparison["metric"] == "output_tokens_per_s"]
    # Whether a new CPU run lands in the original's 95 % prediction interval depends on this
    # machine's load, not on the code (once in CI a new run 8 % slower than two originals
    # 0.4 % apart missed it by 4 %): the interval's arithmetic is tests/unit/test_compare.py's. Here,
    # each row is complete and says what its own bounds say, and the runs did the same work.
    assert len(tps) == 2, tps.to_string()
    for _, row in tps.iterrows():
        low, high, new_mean = row["original_pi95_low"], row["original_pi95_high"], row["new_mean"]
        assert low < row["original_mean"] < high, tps.to_string()
        assert bool(row["within_original_pi95"]) == (low <= new_mean <= high), tps.to_string()
        assert 0.5 < row["ratio_new_to_original"] < 2, tps.to_string()
    assert (tps["image_id"] == image_a).all() and (tps["original_image_id"] == image_a).all()
    assert tps["same_image"].all() and (tps["model_check"] == "match").all()

    # another model is refused before anything runs, and recorded when accepted
    other = write_tiny_model(reviewer / "weights" / "other", seed=5)
    refused = harness_cli("bundle", "reproduce", str(plain), "--runs", "1", "--model",
                          f"models/tiny={other}", "--output-dir", "mismatch", cwd=reviewer)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "changed file: model.safetensors" in refused.stderr + refused.stdout
    accepted = harness_cli("bundle", "reproduce", str(plain), "--runs", "1", "--model",
                           f"models/tiny={other}", "--accept-model-mismatch", "--output-dir",
                           "mismatch", cwd=reviewer)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    checks = pd.read_csv(only_study(reviewer / "mismatch") / "comparison.csv")["model_check"]
    assert checks.str.startswith("mismatch: changed file: model.safetensors").all()
    assert not any(t.startswith(KEEP_REPOSITORY) for t in docker_client.images.get(image_b).tags)

    print("\nreviewer flow timings:", {k: round(v, 1) for k, v in TIMES.items()},
          "bundle bytes:", sizes)
