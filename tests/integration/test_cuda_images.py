"""The CUDA images built offline (debootstrap base + wheelhouse) and checked without a GPU.

Marked ``cuda_image``: each image is several GB and a cold build takes minutes, so the default
and CI runs leave these out. Run them with

    pytest -m cuda_image tests/integration/test_cuda_images.py

or build with ``make images-cuda``, which also runs ``harness images check`` on each image.
"""

from pathlib import Path

import pytest

from harness.controller.images import build_image, variant
from harness.controller.images.build import BUILD_LABEL, CUDA_LABEL
from harness.controller.images.check import check_image

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.cuda_image]

#: backend -> what the image must hold: the engine's version and torch's (the vendor image's)
ENGINES = {
    "pytorch": {"torch": "2.9.0+cu128"},
    "vllm": {"vllm": "0.32.0", "torch": "2.13.0+cu130"},
}


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_cuda_image_builds_offline_and_passes_its_checks(docker_client, backend: str) -> None:
    recipe = variant(backend, "cuda")
    built = build_image(backend, "cuda", offline=True, repo_root=REPO, client=docker_client)
    labels = docker_client.images.get(built.tag).labels
    assert labels[BUILD_LABEL] == "offline" and labels[CUDA_LABEL] == recipe.cuda

    found = check_image(backend, "cuda", client=docker_client)
    failed = [c for c in found.checks if not c["ok"]]
    assert found.ok, failed
    names = {c["name"] for c in found.checks}
    assert names >= {"engine", "cuda_runtime", "requirements", "pip_check", "libraries",
                     "compiler", "agent_refuses_cuda"}
    assert found.build["cuda_runtime"] == recipe.cuda and found.build["cuda_built"] is True
    for key, version in ENGINES[backend].items():
        assert found.build[key] == version, key
    refusal = next(c for c in found.checks if c["name"] == "agent_refuses_cuda")
    assert "error.json reason no_gpu: no NVIDIA GPU visible" in refusal["detail"]
