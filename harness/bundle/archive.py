"""Opening a bundle someone else made: judge it by its headers, then extract it safely.

Reviewers open bundles they did not make. Before anything is extracted, each member's header is
checked as it is read: no absolute path, ``..``, link, device or sparse member; no member larger
than its kind allows (LIMITS_BY_NAME: a result.json is small, a docker-saved image is not); the
declared sizes together under a cap, and under a ratio to the archive's compressed size (a
9 MB archive that unpacks to 2 GB of zeros is refused at its first header, in milliseconds,
without reading the data). Files with a schema are then read through ``read_bounded``, which
never reads a file larger than its kind allows.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from harness.bundle.layout import SUMS, BundleInvalid
from harness.errors import UserInputError

MiB = 1 << 20
GiB = 1 << 30
#: the most a file of each kind (its name) may hold; other files are bounded by member_bytes
LIMITS_BY_NAME: dict[str, int] = {
    "result.json": 32 * MiB,
    "error.json": 16 * MiB,
    "config.json": 16 * MiB,
    "manifest.json": 256 * MiB,
    "plan.json": 512 * MiB,
    "provenance.json": 64 * MiB,
    "study.yaml": 16 * MiB,
    SUMS: 256 * MiB,
}


@dataclass(frozen=True)
class Limits:
    """What an archive may unpack to, judged from its headers before anything is extracted."""

    total_bytes: int = 64 * GiB
    member_bytes: int = 32 * GiB
    #: uncompressed over compressed size, judged once the members declare ratio_floor_bytes
    ratio: float = 100.0
    ratio_floor_bytes: int = 16 * MiB
    members: int = 1_000_000
    by_name: Mapping[str, int] = field(default_factory=lambda: dict(LIMITS_BY_NAME))

    def of(self, name: str) -> int:
        """The most a member or file with this path may hold."""
        return min(self.by_name.get(PurePosixPath(name).name, self.member_bytes),
                   self.member_bytes)


DEFAULT_LIMITS = Limits()


def size_text(n: float) -> str:
    """A byte count for people (512 B, 3.0 MiB, 2.0 GiB)."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _path_problem(m: tarfile.TarInfo) -> str | None:
    path = PurePosixPath(m.name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return f"unsafe path in the archive: {m.name}"
    if m.issparse():
        return f"sparse member in the archive: {m.name} (bundles hold plain files)"
    if not (m.isfile() or m.isdir()):
        return f"not a regular file in the archive: {m.name} (links are refused)"
    return None


def size_problem(m: tarfile.TarInfo, total: int, count: int, compressed: int,
                  limits: Limits) -> str | None:
    """Why a member's header (with those before it) is too much to extract, or None."""
    if m.size > limits.of(m.name):
        return too_large(m.name, m.size, limits, verb="declares")
    if total > limits.total_bytes:
        return (f"the members up to {m.name} declare {size_text(total)} in all; at most "
                f"{size_text(limits.total_bytes)}")
    if total >= limits.ratio_floor_bytes and total > limits.ratio * max(compressed, 1):
        return (f"the members up to {m.name} declare {size_text(total)} from a "
                f"{size_text(compressed)} archive: {total / max(compressed, 1):.0f} times its "
                f"size, at most {limits.ratio:.0f} (an archive bomb?)")
    if count > limits.members:
        return f"more than {limits.members} members"
    return None


def within_limits(tar: tarfile.TarFile, compressed: int, limits: Limits,
                  problems: list[str]) -> Iterator[tarfile.TarInfo]:
    """A tar's members as their headers are read, judged against the size limits.

    Stops (adding the problem) at the first member that takes the sizes past the limits:
    reading on would read its data.
    """
    total = count = 0
    for m in tar:  # each header is judged as it is read, before the next one is looked for
        count += 1
        total += m.size
        size = size_problem(m, total, count, compressed, limits)
        if size:
            problems.append(size)
            return
        yield m


def screen(tar: tarfile.TarFile, compressed: int,
           limits: Limits = DEFAULT_LIMITS) -> tuple[list[tarfile.TarInfo], list[str]]:
    """The members safe to extract and the problems found, reading headers only.

    Stops at the first member whose size is too much: reading on would read its data.
    """
    members: list[tarfile.TarInfo] = []
    problems: list[str] = []
    for m in within_limits(tar, compressed, limits, problems):
        path = _path_problem(m)
        if path:
            problems.append(path)
        else:
            members.append(m)
    return members, problems


def extract(bundle: Path, dest: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Safely extract a bundle (judged by its headers first; no links or escapes); its root."""
    bundle = Path(bundle)
    try:
        compressed = bundle.stat().st_size
        tar = tarfile.open(bundle, "r:gz")
    except FileNotFoundError as e:
        raise UserInputError(f"{bundle}: no such file") from e
    except (tarfile.TarError, OSError) as e:
        raise BundleInvalid(f"{bundle}: not a readable tar.gz bundle",
                            problems=[f"{type(e).__name__}: {e}"]) from e
    with tar:
        try:
            members, problems = screen(tar, compressed, limits)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise BundleInvalid(f"{bundle}: not a readable tar.gz bundle",
                                problems=[f"{type(e).__name__}: {e}"]) from e
        if problems:
            raise BundleInvalid(f"{bundle}: refusing to extract", problems=problems)
        tops = {PurePosixPath(m.name).parts[0] for m in members}
        if len(tops) != 1:
            raise BundleInvalid(f"{bundle}: expected one top folder",
                                problems=[f"top-level entries: {', '.join(sorted(tops))}"])
        kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **kwargs)  # noqa: S202 - members checked above
    return dest / tops.pop()


def too_large(rel: str, size: int, limits: Limits = DEFAULT_LIMITS, *, verb: str = "is") -> str:
    """The problem of a file larger than its kind allows, naming both sizes."""
    name = PurePosixPath(rel).name
    kind = f"a {name}" if name in limits.by_name else "a file"
    return (f"too large: {rel} {verb} {size_text(size)} ({size} bytes); {kind} may hold at "
            f"most {size_text(limits.of(rel))}")


def read_bounded(root: Path, rel: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """A bundle file's text, refused unread (BundleInvalid) when larger than its kind allows."""
    path = root / rel
    cap = limits.of(rel)
    size = path.stat().st_size
    if size > cap:
        raise BundleInvalid(f"{rel} is too large", problems=[too_large(rel, size, limits)])
    with path.open("rb") as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:  # it grew since stat()
        raise BundleInvalid(f"{rel} is too large", problems=[too_large(rel, len(data), limits)])
    return data.decode("utf-8")
