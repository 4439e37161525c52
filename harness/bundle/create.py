"""Making a bundle: copy the study, add provenance and REVIEWERS.md, redact, checksum, pack."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.bundle.layout import PROVENANCE, REVIEWERS, SUMS, list_files
from harness.bundle.provenance import write_provenance
from harness.bundle.redact import Redaction, check_redacted, redact_tree, write_redactions
from harness.bundle.reviewers import reviewers_text
from harness.errors import UserInputError
from harness.results.io import sha256_file
from harness.secrets import secret_values


@dataclass
class Created:
    """What ``create`` wrote."""

    path: Path
    files: int
    redactions: list[Redaction]  # (file, field) of each redacted value, never the value
    notes: list[str] = field(default_factory=list)


def _write_archive(root: Path, files: list[str], output: Path) -> None:
    """Write SHA256SUMS and pack root into output (tar.gz), atomically."""
    sums = "".join(f"{sha256_file(root / rel)}  {rel}\n" for rel in files)
    (root / SUMS).write_text(sums, encoding="utf-8")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for rel in [*files, SUMS]:
            info = tar.gettarinfo(root / rel, arcname=f"{root.name}/{rel}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (root / rel).open("rb") as fh:
                tar.addfile(info, fh)
    partial.replace(output)


def create(study_dir: Path, output: Path | None = None, *, pip_freeze: bool = True) -> Created:
    """Build the report, then write a checksummed, secret-free tar.gz of the study."""
    from harness.analysis import report as report_mod
    from harness.config.load import read_yaml

    study_dir = Path(study_dir).resolve()
    name = study_dir.name
    output = Path(output) if output else study_dir.parent / f"{name}.tar.gz"
    if output.resolve().is_relative_to(study_dir):
        raise UserInputError(f"-o {output}: the bundle cannot be written inside the study folder")
    rep = report_mod.build(study_dir)
    known = secret_values()
    with tempfile.TemporaryDirectory(prefix="harness-bundle-") as tmp:
        root = Path(tmp) / name
        shutil.copytree(
            study_dir, root, symlinks=False,
            ignore=shutil.ignore_patterns("*.tmp", ".*.tmp", "__pycache__"),
        )
        prov_dir = root / PROVENANCE
        if prov_dir.exists():
            shutil.rmtree(prov_dir)
        prov_dir.mkdir()
        prov = write_provenance(study_dir, rep.manifest, rep.plan, with_pip_freeze=pip_freeze,
                                dest=prov_dir)
        notes = [f"image {img['tag']}: pip freeze {img['pip_freeze_note']}"
                 for img in prov["images"]
                 if img.get("pip_freeze_note") and not img.get("pip_freeze")]
        study_raw = read_yaml(root / "study.yaml")
        study_raw = study_raw if isinstance(study_raw, dict) else {}
        (root / REVIEWERS).write_text(
            reviewers_text(name, output.name, study_raw, prov, rep.plan), encoding="utf-8")
        redactions = redact_tree(root, known)
        write_redactions(root, redactions)
        check_redacted(root, known)
        files = list_files(root)
        _write_archive(root, files, output)
    return Created(output, len(files) + 1, redactions, notes)
