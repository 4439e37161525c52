"""Which model a run used: where it came from and a fingerprint of its files.

Used by the agent (each result records the model it loaded) and by the controller (a
reviewer's copy of a model is checked against a bundle's before any container starts), so it
is pure standard library plus the result schema.

**Source.** A hub id read from a Hugging Face cache resolves to ``models--ORG--NAME/
snapshots/REVISION``: the identity records the hub id and that revision (the snapshot's
commit). Any other folder is recorded as a local folder.

**Fingerprint.** Every file of the model's folder counts except documentation (README*,
LICENSE*, NOTICE*, *.md) and hidden files. Each file gets a SHA-256:

- ``full`` mode: of every byte of every file;
- ``fast`` mode: every file is hashed whole, as in full mode, except a weight file
  (WEIGHT_SUFFIXES: .safetensors, .bin, .pt, .pth, .gguf) larger than SAMPLE_BLOCKS x
  BLOCK_BYTES (1 MiB), which is hashed from its size, its safetensors header (when it is one)
  and SAMPLE_BLOCKS blocks of BLOCK_BYTES spread evenly over it, the first at its start and
  the last at its end (``sampled: true``). That tells a different checkpoint (a fine-tune,
  another quantisation, a truncated download) from the recorded one while reading 1 MiB per
  weight file, but not a single changed value between the sampled blocks; full mode does.
  Configuration and tokenizer files (a tokenizer.json of several MiB) count byte for byte.

The fingerprint is the SHA-256 of the mode and the sorted (path, bytes, sha256) entries, so two
copies compare equal exactly when every entry does; ``differences`` names the entries that do
not.

**Scheme.** Which files fast mode samples is the fingerprint's ``scheme`` (recorded with it):
1 (results before schema 1.4, no ``scheme`` field) sampled every file over 1 MiB, tokenizer
files included; 2 (FINGERPRINT_SCHEME) samples only weight files. A copy is checked in the
scheme its record used (``identify(..., scheme=recorded.scheme)``), so an old bundle still
verifies; ``differences`` refuses to compare fast fingerprints of different schemes. Full mode
is the same in every scheme.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from harness.config.experiment import FingerprintMode
from harness.results.schema import ModelFile, ModelIdentity

#: a model reference that starts like this is a path on the host, never a hub id
PATH_PREFIXES = ("/", "./", "../", "~")
BLOCK_BYTES = 64 * 1024
SAMPLE_BLOCKS = 16
#: the files fast mode samples when larger than SAMPLE_BLOCKS x BLOCK_BYTES (scheme 2)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
#: which files fast mode samples: 1 every file over 1 MiB, 2 only weight files (see above)
FINGERPRINT_SCHEME = 2
KNOWN_SCHEMES = (1, 2)
#: files that describe a model rather than make it (left out of the fingerprint)
DOC_PREFIXES = ("readme", "license", "notice", "use_policy")
DOC_SUFFIXES = (".md",)
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
_HUB_PREFIX = "models--"


def model_files(folder: Path) -> Iterator[Path]:
    """The files of a model folder that its fingerprint covers, sorted (links followed)."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        name = path.name.lower()
        if name.startswith(DOC_PREFIXES) or name.endswith(DOC_SUFFIXES):
            continue
        yield path


def _full(fh: BinaryIO, digest: hashlib._Hash) -> None:
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)


def _safetensors_header(fh: BinaryIO, size: int) -> bytes:
    """The JSON header of a safetensors file (empty when the file is not one)."""
    fh.seek(0)
    head = fh.read(8)
    if len(head) < 8:
        return b""
    (length,) = struct.unpack("<Q", head)
    if length > min(_MAX_SAFETENSORS_HEADER, size - 8):
        return b""
    return fh.read(length)


def _sampled(fh: BinaryIO, size: int, path: Path, digest: hashlib._Hash) -> None:
    """Hash the size, the safetensors header and SAMPLE_BLOCKS blocks spread over the file."""
    digest.update(str(size).encode())
    if path.suffix == ".safetensors":
        digest.update(_safetensors_header(fh, size))
    step = (size - BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    for i in range(SAMPLE_BLOCKS):
        fh.seek(round(i * step))
        digest.update(fh.read(BLOCK_BYTES))


def is_sampled(path: Path, size: int, mode: FingerprintMode, scheme: int) -> bool:
    """Whether a file of ``size`` bytes is sampled (not hashed whole) in ``mode`` and ``scheme``."""
    if scheme not in KNOWN_SCHEMES:
        raise ValueError(f"fingerprint scheme {scheme}: this harness knows schemes "
                         f"{', '.join(map(str, KNOWN_SCHEMES))}")
    if mode != "fast" or size <= SAMPLE_BLOCKS * BLOCK_BYTES:
        return False
    return scheme == 1 or path.suffix.lower() in WEIGHT_SUFFIXES


def file_entry(path: Path, rel: str, mode: FingerprintMode,
               scheme: int = FINGERPRINT_SCHEME) -> ModelFile:
    """One file's fingerprint entry in ``mode`` (and fast ``scheme``)."""
    size = path.stat().st_size
    sampled = is_sampled(path, size, mode, scheme)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if sampled:
            _sampled(fh, size, path, digest)
        else:
            _full(fh, digest)
    return ModelFile(path=rel, bytes=size, sha256=digest.hexdigest(), sampled=sampled)


def fingerprint_of(files: list[ModelFile], mode: FingerprintMode) -> str:
    """The SHA-256 over a fingerprint's mode and entries."""
    entries = sorted((f.path, f.bytes, f.sha256) for f in files)
    return hashlib.sha256(json.dumps([mode, entries]).encode()).hexdigest()


def hub_source(folder: Path) -> tuple[str, str] | None:
    """The hub id and revision of a cache snapshot folder (…/models--ORG--NAME/snapshots/REV)."""
    parts = folder.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith(_HUB_PREFIX):
        return parts[-3][len(_HUB_PREFIX):].replace("--", "/"), parts[-1]
    return None


def hub_snapshot(cache: Path, hub_id: str, revision: str | None = None) -> Path | None:
    """The snapshot folder of a hub id in a cache: ``revision``'s, else its refs/main; or None."""
    hub = cache / "hub" if (cache / "hub").is_dir() else cache
    repo = hub / (_HUB_PREFIX + hub_id.replace("/", "--"))
    if revision and (repo / "snapshots" / revision).is_dir():
        return repo / "snapshots" / revision
    try:
        main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / main
    return snapshot if main and snapshot.is_dir() else None


def identify(ref: str, folder: Path, mode: FingerprintMode,
             scheme: int = FINGERPRINT_SCHEME) -> ModelIdentity:
    """The identity of the model ``ref`` read from ``folder``; OSError when unreadable.

    ``scheme`` is this harness's; an older one re-creates a recorded fingerprint to check it.
    """
    files = [file_entry(p, p.relative_to(folder).as_posix(), mode, scheme)
             for p in model_files(folder)]
    hub = hub_source(folder)
    note = None if files else f"{folder} holds no model files"
    return ModelIdentity(
        ref=ref, source="hub" if hub else "folder", hub_id=hub[0] if hub else None,
        revision=hub[1] if hub else None, folder=str(folder), mode=mode, scheme=scheme,
        fingerprint=fingerprint_of(files, mode) if files else None, files=files, note=note,
    )


def identify_for_agent(ref: str, model_path: str, mode: FingerprintMode) -> ModelIdentity:
    """The identity of the model an engine loads from ``model_path`` (resolved as engines do).

    Never raises: a model that cannot be read is recorded with a note saying why.
    """
    from harness.backends.weights import find_model
    from harness.errors import RunFailure

    try:
        folder = find_model(model_path)
        return identify(ref, folder, mode)
    except (RunFailure, OSError, ValueError) as e:
        return ModelIdentity(ref=ref, source="folder", folder=model_path, mode=mode,
                             scheme=FINGERPRINT_SCHEME, note=f"not fingerprinted: {e}")


def differences(recorded: ModelIdentity, found: ModelIdentity) -> list[str]:
    """How ``found`` differs from ``recorded``, file by file (empty when they match)."""
    if recorded.mode != found.mode:
        return [f"fingerprints of different modes ({recorded.mode} and {found.mode})"]
    if recorded.mode == "fast" and recorded.scheme != found.scheme:
        return [f"fast fingerprints of different schemes ({recorded.scheme} and {found.scheme}: "
                "they sample different files); fingerprint the copy in the recorded scheme"]
    if recorded.fingerprint == found.fingerprint:
        return []
    old = {f.path: f for f in recorded.files}
    new = {f.path: f for f in found.files}
    out = [f"missing file: {p} ({old[p].bytes} bytes)" for p in sorted(old.keys() - new.keys())]
    out += [f"extra file: {p} ({new[p].bytes} bytes)" for p in sorted(new.keys() - old.keys())]
    for path in sorted(old.keys() & new.keys()):
        a, b = old[path], new[path]
        if a.bytes != b.bytes:
            out.append(f"changed file: {path}: {b.bytes} bytes, recorded {a.bytes}")
        elif a.sha256 != b.sha256:
            out.append(f"changed file: {path}: SHA-256 {b.sha256[:12]}..., recorded "
                       f"{a.sha256[:12]}...")
    return out or ["the fingerprints differ"]
