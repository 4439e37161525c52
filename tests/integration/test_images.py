"""Building the PyTorch CPU image offline, and what ends up inside it."""

import json
import os
from pathlib import Path

import pytest

import harness
from harness.controller.images import build_image, image_tag
from harness.controller.images.base import OFFLINE_BASE
from harness.source import source_info

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def run_python(client, tag: str, code: str, **kwargs) -> str:
    """Run ``python -c code`` in a fresh container without network and return its output."""
    out = client.containers.run(
        tag,
        entrypoint=["python", "-c", code],
        network_mode="none",
        user=f"{os.getuid()}:{os.getgid()}",
        remove=True,
        stdout=True,
        stderr=True,
        **kwargs,
    )
    return out.decode()


@pytest.fixture(scope="module")
def built(docker_client):
    lines: list[str] = []
    info = build_image(
        "pytorch", "cpu", offline=True, repo_root=REPO, client=docker_client, progress=lines.append
    )
    return info, lines


def test_offline_build_makes_the_tagged_image(docker_client, built) -> None:
    info, _ = built
    assert info.tag == image_tag("pytorch", "cpu") == "harness/pytorch:cpu"
    assert info.id.startswith("sha256:")
    assert info.digest is None  # built here, never pushed
    assert info.build_args["BASE_IMAGE"] == OFFLINE_BASE
    image = docker_client.images.get(info.tag)
    assert image.id == info.id
    labels = image.labels
    assert labels["harness.backend"] == "pytorch"
    assert labels["harness.device"] == "cpu"
    assert labels["harness.version"] == harness.__version__
    assert labels["org.opencontainers.image.revision"] == source_info(REPO).revision
    assert labels["harness.build"] == "offline"
    config = image.attrs["Config"]
    assert config["Entrypoint"][:2] == ["/bin/sh", "-c"]
    assert "python -m harness.agent" in config["Entrypoint"][2]
    assert not config["Cmd"]
    assert "HF_HUB_OFFLINE=1" in config["Env"]


def test_context_holds_only_what_the_build_needs(built) -> None:
    context = REPO / ".cache" / "build" / "pytorch-cpu"
    assert sorted(p.name for p in context.iterdir()) == ["Dockerfile", "wheels"]
    assert sorted(p.name for p in (context / "wheels").iterdir()) == ["deps", "harness"]
    (own,) = (context / "wheels" / "harness").iterdir()
    assert own.name == f"harness-{harness.__version__}-py3-none-any.whl"
    assert any(p.name.startswith("torch-2.13.0") for p in (context / "wheels" / "deps").iterdir())


def test_image_has_torch_and_this_harness(docker_client, built) -> None:
    info, _ = built
    code = (
        "import json, torch, transformers, harness; "
        "print(json.dumps({'torch': torch.__version__, 'harness': harness.__version__, "
        "'file': harness.__file__}))"
    )
    found = json.loads(run_python(docker_client, info.tag, code).strip().splitlines()[-1])
    assert found["torch"].startswith("2.13.0")
    assert found["harness"] == harness.__version__
    assert found["file"].startswith("/opt/venv/")  # installed from the wheel, not mounted


def test_tiny_model_generates_in_the_image(docker_client, built, tiny_model) -> None:
    info, _ = built
    code = (
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "tok = AutoTokenizer.from_pretrained('/model')\n"
        "model = AutoModelForCausalLM.from_pretrained('/model')\n"
        "batch = tok(['Hello there', 'The quick brown fox'], return_tensors='pt', padding=True)\n"
        "out = model.generate(**batch, max_new_tokens=16, min_new_tokens=16, do_sample=False)\n"
        "print('shape', tuple(out.shape[:1]), out.shape[1] - batch['input_ids'].shape[1])\n"
    )
    out = run_python(
        docker_client, info.tag, code, volumes={str(tiny_model): {"bind": "/model", "mode": "ro"}}
    )
    assert "shape (2,) 16" in out


def test_rebuild_reuses_wheelhouse_and_layers(docker_client, built) -> None:
    info, _ = built
    lines: list[str] = []
    again = build_image(
        "pytorch", "cpu", offline=True, repo_root=REPO, client=docker_client, progress=lines.append
    )
    assert "wheelhouse is up to date" in lines
    assert not any("Collecting" in line or "Processing /wheels" in line for line in lines)
    assert again.build_args == info.build_args
    assert (REPO / ".cache" / "wheelhouse" / "pytorch-cpu" / ".requirements.sha256").is_file()
    # the same source gives the same harness wheel bytes, so every layer is reused: the same
    # image, not a new one per build (each study would otherwise pin an image of its own)
    assert again.id == info.id


def test_the_entrypoint_runs_the_agent(docker_client, built) -> None:
    info, _ = built
    out = docker_client.containers.run(
        info.tag, command=["--help"], network_mode="none", user=f"{os.getuid()}:{os.getgid()}",
        remove=True, stdout=True, stderr=True,
    ).decode()
    assert "usage: python -m harness.agent" in out
