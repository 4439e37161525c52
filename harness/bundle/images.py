"""Images carried in a bundle: saved from the engine, checked by id, loaded back.

``bundle create --with-images`` writes each image the runs used as ``images/ID12.tar.gz``: the
engine's ``docker save`` of the image by id, gzip-compressed as it streams (level 1: an image's
layers are mostly compiled code, which level 6 shrinks only about 12 % more at over three times
the time). An image's id is the SHA-256 of its config, and the config lists the SHA-256 of each
uncompressed layer (``rootfs.diff_ids``), so ``check_archive`` proves an archive holds exactly
the recorded image by hashing its config and every layer, reading the archive as a stream,
without loading it into an engine. ``load`` then hands it to ``docker load``.

The archive's own headers are judged as they are read, like a bundle's (harness.bundle.archive):
sizes under the limits, and under the ratio to the compressed size.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from harness.bundle.archive import DEFAULT_LIMITS, Limits, within_limits
from harness.errors import EnvironmentProblem

IMAGES = "images"
GZIP_LEVEL = 1
CHUNK = 1 << 20
#: members kept in memory to be parsed (manifest.json, index.json, the image config)
SMALL_BYTES = 4 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def archive_path(image_id: str) -> str:
    """Where an image's archive lies in a bundle: ``images/ID12.tar.gz``."""
    return f"{IMAGES}/{image_id.split(':', 1)[-1][:12]}.tar.gz"


def save(client: Any, image_id: str, dest: Path) -> int:
    """``docker save`` one image (by id) into a gzip file as it streams; its size in bytes."""
    import docker.errors

    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        stream = client.api.get_image(image_id, chunk_size=CHUNK)
        with dest.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   compresslevel=GZIP_LEVEL, mtime=0) as gz:
            for chunk in stream:
                gz.write(chunk)
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"cannot save image {image_id}: {e}") from e
    return dest.stat().st_size


@dataclass
class ArchiveCheck:
    """What an image archive holds: the id its config hashes to, and what does not add up."""

    image_id: str | None
    layers: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


class _Digests:
    """SHA-256 of a member's bytes, and of its decompressed bytes when it is gzip data."""

    def __init__(self) -> None:
        self.raw = hashlib.sha256()
        self.plain: Any = None
        self.inflate: Any = None
        self.first = True

    def update(self, chunk: bytes) -> None:
        if self.first:
            self.first = False
            if chunk.startswith(_GZIP_MAGIC):
                self.plain, self.inflate = hashlib.sha256(), zlib.decompressobj(31)
        self.raw.update(chunk)
        if self.inflate is not None:
            self.plain.update(self.inflate.decompress(chunk))

    def digests(self) -> set[str]:
        out = {self.raw.hexdigest()}
        if self.plain is not None:
            out.add(self.plain.hexdigest())
        return out


def _read_members(tar: tarfile.TarFile, compressed: int, limits: Limits,
                  problems: list[str]) -> tuple[dict[str, set[str]], dict[str, bytes], int]:
    """Stream every member: digests by name (links resolved), small members' bytes, total."""
    digests: dict[str, set[str]] = {}
    small: dict[str, bytes] = {}
    links: dict[str, str] = {}
    total = 0
    for m in within_limits(tar, compressed, limits, problems):
        total += m.size
        name = PurePosixPath(m.name).as_posix()
        if m.issym() or m.islnk():
            base = PurePosixPath(name).parent if m.issym() else PurePosixPath()
            links[name] = PurePosixPath(*(base / m.linkname).parts).as_posix()
            continue
        if not m.isfile():
            continue
        fh = tar.extractfile(m)
        assert fh is not None
        digest = _Digests()
        keep = m.size <= SMALL_BYTES
        data = bytearray()
        for chunk in iter(partial(fh.read, CHUNK), b""):
            digest.update(chunk)
            if keep:
                data += chunk
        digests[name] = digest.digests()
        if keep:
            small[name] = bytes(data)
    for alias, target in links.items():
        target = _normal(target)
        if target in digests:
            digests[alias] = digests[target]
            if target in small:
                small[alias] = small[target]
    return digests, small, total


def _normal(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            parts = parts[:-1]
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _check_layers(entry: dict[str, Any], config: dict[str, Any],
                  digests: dict[str, set[str]], problems: list[str]) -> int:
    diff_ids = [str(d).split(":", 1)[-1] for d in (config.get("rootfs") or {}).get("diff_ids", [])]
    layers = list(entry.get("Layers") or [])
    if len(layers) != len(diff_ids):
        problems.append(f"{len(layers)} layers, but the image config lists {len(diff_ids)}")
    for n, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=False), start=1):
        if diff_id not in digests.get(_normal(layer), set()):
            problems.append(f"layer {n} ({layer}) does not hash to the config's sha256:"
                            f"{diff_id[:12]}... (changed or missing)")
    return len(layers)


def check_archive(path: Path, limits: Limits = DEFAULT_LIMITS) -> ArchiveCheck:
    """The id of the image an archive holds, with its layers checked against its config."""
    problems: list[str] = []
    try:
        with tarfile.open(path, "r|*") as tar:
            digests, small, total = _read_members(tar, path.stat().st_size, limits, problems)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        return ArchiveCheck(None, problems=[f"not a readable image archive: {e}"])
    if problems:  # reading stopped at a member too large to read
        return ArchiveCheck(None, problems=problems)
    try:
        manifest = json.loads(small["manifest.json"])
        (entry,) = manifest
        config_bytes = small[_normal(entry["Config"])]
        config = json.loads(config_bytes)
    except (KeyError, ValueError, TypeError) as e:
        return ArchiveCheck(None, problems=["no single image in the archive (manifest.json or "
                                            f"its config: {e!r})"])
    layers = _check_layers(entry, config, digests, problems)
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    return ArchiveCheck(image_id, layers, total, problems)


def load(client: Any, path: Path) -> list[str]:
    """``docker load`` an archive; the ids of the images the engine loaded."""
    import docker.errors

    try:
        with path.open("rb") as fh:
            loaded = client.images.load(fh)  # streamed from the file by requests
    except docker.errors.DockerException as e:
        raise EnvironmentProblem(f"docker load of {path.name} failed: {e}") from e
    return [image.id for image in loaded]

