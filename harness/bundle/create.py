"""Making a bundle: copy the study, add provenance and what travels with it, redact, pack.

What travels: the images (``--with-images``), the prompt files and the harness source
(harness.bundle.carry), and REVIEWERS.md.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.bundle.archive import size_text
from harness.bundle.carry import carry_source, carry_workload, run_revisions, workload_files
from harness.bundle.images import archive_path, save
from harness.bundle.layout import PROVENANCE, REVIEWERS, SUMS, VERBATIM, list_files
from harness.bundle.provenance import collect_provenance, write_provenance
from harness.bundle.redact import Redaction, check_redacted, redact_tree, write_redactions
from harness.bundle.reviewers import reviewers_text
from harness.config.datasets import named_files
from harness.config.sweep import Plan
from harness.errors import EnvironmentProblem, UserInputError
from harness.results.io import sha256_file
from harness.results.schema import Manifest
from harness.secrets import secret_values


@dataclass
class Created:
    """What ``create`` wrote."""

    path: Path
    files: int
    redactions: list[Redaction]  # (file, field) of each redacted value, never the value
    notes: list[str] = field(default_factory=list)
    bytes: int = 0


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


def _save_images(root: Path, prov: dict[str, Any]) -> list[str]:
    """Save each image the runs used (every id seen) into the bundle; what was written."""
    import docker.errors

    from harness.controller.runtimes.docker import connect

    client = connect()
    notes = []
    for image in prov["images"]:
        image["archives"] = []
        for image_id in image["ids_seen"]:
            try:
                client.images.get(image_id)
            except docker.errors.ImageNotFound as e:
                raise EnvironmentProblem(
                    f"--with-images: image {image_id} ({image['tag']}, used by runs "
                    f"{', '.join(image['runs'][:3])}) is no longer on this machine; bundle "
                    "without --with-images, or keep images with 'harness images prune'") from e
            rel = archive_path(image_id)
            size = save(client, image_id, root / rel)
            image["archives"].append({"id": image_id, "file": rel, "bytes": size})
            notes.append(f"image {image['tag']} ({image_id[:19]}): {rel}, {size_text(size)}")
    return notes


def _resolver(manifest: Manifest) -> Callable[[str], Path]:
    """Where a prompt file the study names was read from, as the manifest recorded it.

    Manifests from before the files were recorded: relative to the folder the study ran from.
    """
    recorded = {d.source: Path(d.path) for d in manifest.datasets}
    base = Path(manifest.working_dir) if manifest.working_dir else Path.cwd()

    def resolve(ref: str) -> Path:
        if ref in recorded:
            return recorded[ref]
        return Path(ref).expanduser() if Path(ref).is_absolute() else base / ref

    return resolve


def carry(root: Path, study_dir: Path, manifest: Manifest, plan: Plan, prov: dict[str, Any], *,
          with_images: bool, resolve: Callable[[str], Path] | None = None) -> list[str]:
    """Add the images (with_images), the prompt files and the source to the bundle and prov."""
    notes = _save_images(root, prov) if with_images else []
    fields = {value: spec.path for e in plan.experiments for spec, value in named_files(e.experiment)}
    prov["workload"], more = carry_workload(workload_files(fields), resolve or _resolver(manifest),
                                            root)
    for entry in prov["workload"]:  # which field named it (serving mode reads its own file)
        entry["field"] = fields[entry["ref"]]
    prov["source"] = carry_source(run_revisions(study_dir, [r.run_id for r in manifest.runs]),
                                  root)
    return notes + more + [f"source: {n}" for n in prov["source"]["notes"]]


def create(study_dir: Path, output: Path | None = None, *, pip_freeze: bool = True,
           with_images: bool = False,
           resolve_prompts: Callable[[str], Path] | None = None) -> Created:
    """Build the report, then write a checksummed, secret-free tar.gz of the study.

    With ``with_images``, each image the runs used is saved into the bundle (docker save).
    """
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
        for carried in (PROVENANCE, *VERBATIM):
            shutil.rmtree(root / carried.rstrip("/"), ignore_errors=True)
        prov_dir = root / PROVENANCE
        prov_dir.mkdir()
        prov = collect_provenance(study_dir, rep.manifest, rep.plan, with_pip_freeze=pip_freeze,
                                  dest=prov_dir)
        notes = [f"image {img['tag']}: pip freeze {img['pip_freeze_note']}"
                 for img in prov["images"]
                 if img.get("pip_freeze_note") and not img.get("pip_freeze")]
        notes += carry(root, study_dir, rep.manifest, rep.plan, prov, with_images=with_images,
                       resolve=resolve_prompts)
        write_provenance(prov, prov_dir)
        study_raw = read_yaml(root / "study.yaml")
        study_raw = study_raw if isinstance(study_raw, dict) else {}
        (root / REVIEWERS).write_text(
            reviewers_text(name, output.name, study_raw, prov, rep.plan), encoding="utf-8")
        redactions = redact_tree(root, known, verbatim=VERBATIM)
        write_redactions(root, redactions)
        check_redacted(root, known, verbatim=VERBATIM)
        files = list_files(root)
        _write_archive(root, files, output)
    return Created(output, len(files) + 1, redactions, notes, output.stat().st_size)
