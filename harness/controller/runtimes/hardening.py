"""The hardening rules of run containers: who they run as, what they may mount, how checked."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: the user containers run as when the controller itself runs as root (nobody:nogroup)
UNPRIVILEGED_USER = (65534, 65534)
#: where Docker engines listen; no mount may expose one to a container
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")
#: container paths that are mounted read-write; every other mount is read-only
WRITABLE_TARGETS = ("/results",)


def container_user() -> tuple[int, int]:
    """The uid:gid containers run as: the host user's, or nobody's when that would be root."""
    uid, gid = os.getuid(), os.getgid()
    return UNPRIVILEGED_USER if uid == 0 else (uid, gid)


def docker_sockets() -> list[Path]:
    """The Docker engine sockets on this host (the usual places and DOCKER_HOST's)."""
    found = [Path(p) for p in DOCKER_SOCKETS]
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        found.append(Path(host.removeprefix("unix://")))
    return found


def mount_problems(volumes: dict[str, dict[str, str]], writable: set[str]) -> list[str]:
    """Why these bind mounts would weaken the container (a Docker socket, a writable model)."""
    problems = []
    sockets = sorted({s.resolve() for s in docker_sockets()})
    for host, spec in volumes.items():
        source = Path(host).resolve()
        for sock in sockets:
            if sock == source or source in sock.parents:
                problems.append(f"{host} (mounted at {spec['bind']}) would expose the Docker "
                                f"socket {sock} to the container")
        if spec.get("mode") != "ro" and spec["bind"] not in writable:
            problems.append(f"{host} would be mounted read-write at {spec['bind']}; only "
                            f"{', '.join(sorted(writable))} may be")
    return problems


def container_problems(attrs: dict[str, Any], writable: set[str]) -> list[str]:
    """What in a created container's configuration breaks the hardening rules, if anything."""
    host = attrs.get("HostConfig") or {}
    problems = []
    if host.get("NetworkMode") != "none":
        problems.append(f"network mode is {host.get('NetworkMode')!r}, not 'none'")
    if host.get("Privileged"):
        problems.append("the container is privileged")
    if "ALL" not in (host.get("CapDrop") or []) or host.get("CapAdd"):
        problems.append("not every capability is dropped")
    if not any(str(o).startswith("no-new-privileges") for o in host.get("SecurityOpt") or []):
        problems.append("no-new-privileges is not set")
    if not host.get("PidsLimit") or host["PidsLimit"] <= 0:
        problems.append("there is no pids limit")
    user = (attrs.get("Config") or {}).get("User") or ""
    if user.split(":")[0] in ("", "0", "root"):
        problems.append(f"the container would run as root (user {user!r})")
    for mount in attrs.get("Mounts") or []:
        if mount.get("RW") and mount.get("Destination") not in writable:
            problems.append(f"{mount.get('Source')} is mounted read-write at "
                            f"{mount.get('Destination')}")
    return problems


def hand_over(path: Path, user: tuple[int, int]) -> None:
    """Give a folder the container writes into to the container's user (needs root)."""
    if os.getuid() != 0 or user[0] == 0:
        return
    try:
        if path.stat().st_uid == user[0]:
            return  # handed over before (a cache reused across runs)
        for root, dirs, files in os.walk(path):
            os.chown(root, *user)
            for name in dirs + files:
                os.chown(os.path.join(root, name), *user, follow_symlinks=False)
    except OSError:
        pass  # the agent then reports what it cannot write
