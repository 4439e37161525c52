"""The registry-less base image: Debian made with debootstrap and imported into the engine."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from harness.controller.images.wheels import Progress, run_command
from harness.errors import EnvironmentProblem

if TYPE_CHECKING:
    import docker

OFFLINE_BASE = "harness/base:bookworm"
OFFLINE_SUITE = "bookworm"
OFFLINE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")


def ensure_offline_base(
    client: docker.DockerClient,
    *,
    workdir: Path | None = None,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Create the registry-less base image ``harness/base:bookworm`` if missing; return its tag."""
    import docker

    try:
        client.images.get(OFFLINE_BASE)
        return OFFLINE_BASE
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot look up {OFFLINE_BASE}: {e}") from e

    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise EnvironmentProblem(
            f"{OFFLINE_BASE} is missing and debootstrap is not installed to make it "
            "(apt-get install -y debootstrap)"
        )
    if os.geteuid() != 0:
        raise EnvironmentProblem(f"making {OFFLINE_BASE} with debootstrap needs root")
    tar = shutil.which("tar")
    if tar is None:
        raise EnvironmentProblem("tar is needed to import the debootstrap root filesystem")

    with tempfile.TemporaryDirectory(prefix="harness-base-", dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        archive = Path(tmp) / "rootfs.tar"
        cmd = [
            debootstrap, "--variant=minbase", f"--include={','.join(OFFLINE_PACKAGES)}",
            OFFLINE_SUITE, str(rootfs),
        ]  # fmt: skip
        if mirror:
            cmd.append(mirror)
        run_command(cmd, what=f"debootstrap of {OFFLINE_SUITE}", progress=progress)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (rootfs / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        run_command(
            [tar, "-C", str(rootfs), "--numeric-owner", "-cf", str(archive), "."],
            what="archiving the root filesystem",
            progress=progress,
        )
        repository, tag = OFFLINE_BASE.split(":")
        try:
            client.api.import_image_from_file(
                str(archive),
                repository=repository,
                tag=tag,
                changes=[
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "ENV LANG=C.UTF-8",
                    'CMD ["/bin/bash"]',
                    f'LABEL org.opencontainers.image.description="Debian {OFFLINE_SUITE} '
                    'minbase made by debootstrap for the harness"',
                    f"LABEL harness.base={OFFLINE_SUITE}",
                ],
            )
        except docker.errors.DockerException as e:
            raise EnvironmentProblem(f"importing {OFFLINE_BASE} failed: {e}") from e
    if progress:
        progress(f"created {OFFLINE_BASE}")
    return OFFLINE_BASE


