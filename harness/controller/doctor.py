"""Environment checks for ``harness doctor``: engine, NVIDIA runtime, GPUs, backends, images."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Literal

from harness.backends import registry
from harness.controller.images import image_tag
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


def _images(client: Any) -> list[Check]:
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
            built = labels.get("harness.build") or (
                "offline" if labels.get("harness.offline") == "true" else "vendor-base")
            checks.append(Check(f"image {tag}", "ok", f"{img.short_id}, built {built}"))
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
        checks += _images(client)
    return checks
