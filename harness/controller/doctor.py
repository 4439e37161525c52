"""Environment checks for ``harness doctor``: engine, NVIDIA runtime, GPUs, images."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal

from harness.config.backends import BACKENDS
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


def run_checks() -> list[Check]:
    """Run every check, in order."""
    checks: list[Check] = []
    try:
        from harness.controller.runtimes.docker import connect

        client = connect()
        version = client.version().get("Version", "?")
        checks.append(Check("Docker engine", "ok", f"answers (version {version})"))
    except EnvironmentProblem as e:
        checks.append(
            Check(
                "Docker engine", "fail", str(e),
                "start it (sudo systemctl start docker, or scripts/ensure-docker.sh as root); "
                "without it studies use the local runner",
            )
        )
        client = None
    if client is not None:
        runtimes = client.info().get("Runtimes", {}) or {}
        if "nvidia" in runtimes:
            checks.append(Check("NVIDIA runtime", "ok", "registered with the engine"))
        else:
            checks.append(
                Check(
                    "NVIDIA runtime", "warn", "not registered: cuda runs cannot get GPUs",
                    "install nvidia-container-toolkit and run "
                    "'nvidia-ctk runtime configure --runtime=docker'",
                )
            )
    checks.append(_gpus())
    if client is not None:
        import docker.errors

        for spec in BACKENDS.values():
            for device in spec.devices:
                tag = image_tag(spec.name, device)
                try:
                    img = client.images.get(tag)
                    checks.append(Check(f"image {tag}", "ok", img.short_id))
                except docker.errors.ImageNotFound:
                    offline = " --offline" if device == "cpu" else ""
                    checks.append(
                        Check(
                            f"image {tag}", "warn", "not built",
                            f"harness images build --backend {spec.name} --device {device}"
                            f"{offline}",
                        )
                    )
    return checks
