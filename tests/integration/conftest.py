"""Fixtures shared by the integration tests: a real Docker engine, the CPU image, a tiny model."""

import os
from pathlib import Path

import pytest

from harness.models import write_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker_client():
    """A client of the local Docker engine; under CI a missing engine fails instead of skipping."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        reason = f"no Docker engine answers ({e}); start one with scripts/ensure-docker.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def pytorch_cpu_image(docker_client) -> str:
    """Tag of harness/pytorch:cpu built offline from this checkout (cached layers are reused)."""
    from harness.controller.images import build_image

    return build_image("pytorch", "cpu", offline=True, repo_root=REPO, client=docker_client).tag


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight two-layer Llama with its tokenizer, written offline."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")
