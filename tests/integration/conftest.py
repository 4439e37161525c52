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
def vllm_cpu_image(docker_client) -> str:
    """Tag of harness/vllm:cpu built offline from this checkout (cached layers are reused)."""
    from harness.controller.images import build_image

    return build_image("vllm", "cpu", offline=True, repo_root=REPO, client=docker_client).tag


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight two-layer Llama with its tokenizer, written offline."""
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session", autouse=True)
def drop_keep_tags():
    """Remove the keep tags (harness/kept:...) that this session's studies added.

    Every study run in containers tags its image for its (temporary) study folder. Tags on an
    image that keeps another tag are removed; an image they alone hold (its tag moved to a
    newer build meanwhile) keeps them, for ``harness images prune`` to judge.
    """
    from harness.controller.images.retention import KEEP_REPOSITORY

    try:
        import docker

        client = docker.from_env()
        before = {t for image in client.images.list(name=KEEP_REPOSITORY) for t in image.tags}
    except Exception:  # noqa: BLE001 - no engine: nothing to tidy
        yield
        return
    yield
    for image in client.images.list(name=KEEP_REPOSITORY):
        ours = {t for t in set(image.tags) - before if t.startswith(KEEP_REPOSITORY + ":")}
        if not set(image.tags) - ours:
            continue  # removing them would delete an image another build left untagged
        for tag in ours:
            try:
                client.images.remove(tag)
            except docker.errors.APIError:
                pass  # gone already
    client.close()


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The name of an idle Slurm node here; under CI a missing cluster fails instead of skipping."""
    import shutil
    import subprocess

    reason = ""
    if not shutil.which("sinfo"):
        reason = "Slurm's sinfo is not installed"
    else:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True,
                              text=True, timeout=30, check=False)
        nodes = [line.split() for line in proc.stdout.splitlines() if line.strip()]
        ready = [n for n, state in nodes if state.rstrip("*~#").startswith(("idle", "mixed"))]
        if ready:
            return ready[0]
        reason = f"no idle Slurm node ({(proc.stdout or proc.stderr).strip() or 'sinfo said nothing'})"
    reason += "; start a single-node cluster with scripts/ensure-slurm.sh (as root)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)
