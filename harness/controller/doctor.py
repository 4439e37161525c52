"""Environment checks for ``harness doctor``: engine, NVIDIA runtime, GPUs, backends, images.

For each CUDA image: whether it is built, how (offline or from its vendor base), and whether
this host's driver supports the CUDA runtime inside (the image's ``harness.cuda_runtime``
label against NVML's CUDA driver version).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Literal

from harness.backends import registry
from harness.controller.images import image_tag
from harness.controller.images.build import BUILD_LABEL, CUDA_LABEL
from harness.errors import EnvironmentProblem


@dataclass
class Check:
    """One check's verdict and how to fix a problem."""

    name: str
    level: Literal["ok", "warn", "fail"]
    detail: str
    fix: str = ""


def _gpus() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Check(
            "GPUs", "warn", "nvidia-smi not found: no NVIDIA GPU visible; only cpu runs work",
            "install the NVIDIA driver on a GPU host",
        )
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,uuid", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError) as e:
        return Check("GPUs", "fail", f"nvidia-smi failed: {e}", "check the NVIDIA driver")
    return Check("GPUs", "ok", "; ".join(out.splitlines()) or "none")


def _engine() -> tuple[Check, Any]:
    from harness.controller.runtimes.docker import connect

    try:
        client = connect()
    except EnvironmentProblem as e:
        return Check(
            "Docker engine", "fail", str(e),
            "start it (sudo systemctl start docker, or scripts/ensure-docker.sh as root); "
            "without it studies use the local runner",
        ), None
    version = client.version().get("Version", "?")
    return Check("Docker engine", "ok", f"answers (version {version})"), client


def _nvidia_runtime(client: Any) -> Check:
    runtimes = client.info().get("Runtimes", {}) or {}
    if "nvidia" in runtimes:
        return Check("NVIDIA runtime", "ok", "registered with the engine")
    return Check(
        "NVIDIA runtime", "warn", "not registered: cuda runs cannot get GPUs",
        "install nvidia-container-toolkit and run "
        "'nvidia-ctk runtime configure --runtime=docker'",
    )


def _backends() -> list[Check]:
    checks = [Check("backend " + spec.name, "ok", spec.summary or "registered")
              for spec in registry.specs()]
    for name, why in registry.broken().items():
        checks.append(Check(f"backend {name}", "fail", why, "fix or uninstall the plug-in"))
    return checks


#: the oldest driver branch that runs a CUDA major release through minor-version
#: compatibility (docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html)
MIN_DRIVER_BRANCH = {11: 450, 12: 525, 13: 580}


@dataclass(frozen=True)
class HostDriver:
    """The host's NVIDIA driver: its version and the newest CUDA version it supports."""

    version: str
    cuda: str


def host_driver() -> HostDriver | None:
    """The host's driver version and CUDA version from NVML (None without a driver)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        version = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
    except pynvml.NVMLError:
        return None
    finally:
        pynvml.nvmlShutdown()
    text = version.decode() if isinstance(version, bytes) else str(version)
    return HostDriver(text, f"{cuda // 1000}.{(cuda % 1000) // 10}")


def _major_minor(version: str) -> tuple[int, int]:
    major, _, rest = version.partition(".")
    return int(major), int(rest.split(".")[0] or 0)


def driver_verdict(driver: HostDriver, runtime: str) -> tuple[Literal["ok", "warn", "fail"], str]:
    """Whether a driver runs an engine built for CUDA ``runtime``, and why."""
    have, need = _major_minor(driver.cuda), _major_minor(runtime)
    said = f"the driver {driver.version} supports CUDA {driver.cuda}; the image's runtime is {runtime}"
    if have >= need:
        return "ok", said
    branch = int(driver.version.split(".")[0])
    floor = MIN_DRIVER_BRANCH.get(need[0])
    if have[0] == need[0] and floor is not None and branch >= floor:
        return "warn", (f"{said}: runs through CUDA minor-version compatibility, without "
                        "features newer than the driver (PTX built by a newer toolkit, which "
                        "Triton and torch.compile produce, cannot be loaded)")
    return "fail", (f"{said}: too old (CUDA {need[0]}.x needs driver branch >= {floor} for "
                    "minor-version compatibility, or a driver that supports the runtime)")


def _cuda_fit(labels: dict[str, str], driver: HostDriver | None) -> tuple[str, str, str]:
    """The level, a note and a fix for an image's CUDA runtime on this host's driver."""
    runtime = labels.get(CUDA_LABEL)
    if runtime is None:
        return "warn", f", CUDA runtime unknown (no {CUDA_LABEL} label)", "rebuild the image"
    if driver is None:
        return "ok", f", CUDA runtime {runtime} (no NVIDIA driver here to compare)", ""
    level, why = driver_verdict(driver, runtime)
    fix = f"update the NVIDIA driver to one that supports CUDA {runtime}" if level != "ok" else ""
    return level, f", CUDA runtime {runtime}: {why}", fix


def _images(client: Any, driver: HostDriver | None = None) -> list[Check]:
    import docker.errors

    checks = []
    for spec in registry.specs():
        if spec.recipe is None:
            continue
        for device, variant in spec.recipe.variants.items():
            tag = image_tag(spec.name, device)
            try:
                img = client.images.get(tag)
            except docker.errors.ImageNotFound:
                how = ("--offline" if variant.offline
                       else f"(from its vendor base {variant.base}, which must be pullable or loaded)")
                checks.append(Check(
                    f"image {tag}", "warn", "not built",
                    f"harness images build --backend {spec.name} --device {device} {how}".strip(),
                ))
                continue
            labels = img.labels or {}
            built = labels.get(BUILD_LABEL) or (
                "offline" if labels.get("harness.offline") == "true" else "vendor-base")
            level, note, fix = "ok", "", ""
            if device == "cuda":
                level, note, fix = _cuda_fit(labels, driver)
            checks.append(Check(f"image {tag}", level,  # type: ignore[arg-type]
                                f"{img.short_id}, built {built}{note}", fix))
    return checks


def run_checks() -> list[Check]:
    """Run every check, in order."""
    engine, client = _engine()
    checks = [engine]
    if client is not None:
        checks.append(_nvidia_runtime(client))
    checks.append(_gpus())
    checks += _backends()
    if client is not None:
        checks += _images(client, host_driver())
    return checks
