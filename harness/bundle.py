"""Review bundles: a checksummed archive of a study that a reviewer verifies and re-runs.

Layout of ``NAME-STAMP.tar.gz`` (one top folder, the study folder's name)::

    NAME-STAMP/
      study.yaml plan.json manifest.json        the study as it ran
      runs/RUNID/...                            every run folder, raw files included
      results.csv results.parquet summary.csv effects.csv pareto.csv report/
      provenance/provenance.json                harness version, git revision, images, host
      provenance/images/SLUG/                   Dockerfile, packages.txt (from the results),
                                                pip-freeze.txt (from the image, when present)
      provenance/redactions.txt                 what was redacted (names and files, no values)
      REVIEWERS.md                              the exact commands to verify and reproduce
      SHA256SUMS                                sha256sum -c compatible, every other file

Secrets never enter a bundle: values of names that look like credentials (HF_TOKEN=...,
api_key=..., "api_key": "...") and Hugging Face tokens (hf_...) are redacted in every text file; a binary
file that holds one makes ``create`` refuse.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
from pydantic import ValidationError

import harness
from harness.config.experiment import Runner
from harness.controller.secrets import REDACTED  # one marker: the controller's scrubbing is idempotent here
from harness.errors import EnvironmentProblem, HarnessError, UserInputError
from harness.results.events import Observer, ignore
from harness.results.reasons import ExitCode
from harness.results.schema import (
    MANIFEST_SCHEMA_VERSION,
    RESULT_SCHEMA_VERSION,
    ExperimentResult,
    ImageInfo,
    Manifest,
)

SUMS = "SHA256SUMS"
REVIEWERS = "REVIEWERS.md"
PROVENANCE = "provenance"
BUNDLE_FORMAT = "1"
TEXT_SUFFIXES = {
    ".json", ".jsonl", ".csv", ".yaml", ".yml", ".log", ".md", ".txt", ".html", ".toml", "",
}
AGGREGATE_RTOL = 1e-6
AGGREGATE_ATOL = 1e-12
HEADLINE = {
    "j_per_output_token": "J/output token",
    "output_tokens_per_s": "output tokens/s",
    "e2e_p50_s": "e2e p50 s",
    "e2e_p90_s": "e2e p90 s",
    "mean_power_w": "mean power W",
}

# -- secrets ---------------------------------------------------------------------------------

SECRET_PARTS = {
    "token", "secret", "password", "passwd", "credential", "credentials", "apikey", "key",
}
HF_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
BEARER_RE = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")
# "NAME": "value" (JSON); the name is judged by secret_name().
JSON_PAIR_RE = re.compile(r'"(?P<name>[^"\\\n]{1,200})"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\\n]|\\.)*)"')
# NAME=value or NAME: value, NAME in environment-variable style (upper case).
ENV_PAIR_RE = re.compile(
    r"(?<![A-Za-z0-9_])(?P<name>[A-Z][A-Z0-9_]*)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;}\]]+)"
)
# name=value with any case (command lines, URLs' query strings, .env files).
ASSIGN_RE = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<sep>=)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&}\]]+)"
)
_SPLIT_RE = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def secret_name(name: str) -> bool:
    """Whether a variable or key name looks like it holds a credential (HF_TOKEN, apiKey)."""
    parts = {p.lower() for p in _SPLIT_RE.split(name) if p}
    return bool(parts & SECRET_PARTS)


def _env_secret_name(name: str) -> bool:
    return name.isupper() and secret_name(name)


def redact_text(text: str) -> tuple[str, list[str]]:
    """The text with every secret-looking value replaced, and what was redacted (no values)."""
    found: list[str] = []

    def pair(match: re.Match[str], judge: Callable[[str], bool]) -> str:
        name, value = match.group("name"), match.group("value")
        bare = value.strip("\"'")
        if not judge(name) or not bare or REDACTED in value:
            return match.group(0)
        found.append(name)
        quote = value[0] if value[:1] in ("'", '"') and len(value) > 1 else ""
        return f"{name}{match.group('sep')}{quote}{REDACTED}{quote}"

    def json_pair(match: re.Match[str]) -> str:
        name, value = match.group("name"), match.group("value")
        if not secret_name(name) or not value or value == REDACTED:
            return match.group(0)
        found.append(name)
        return f'"{name}"{match.group("sep")}"{REDACTED}"'

    text = JSON_PAIR_RE.sub(json_pair, text)
    text = ENV_PAIR_RE.sub(lambda m: pair(m, _env_secret_name), text)
    text = ASSIGN_RE.sub(lambda m: pair(m, secret_name), text)

    def hf(match: re.Match[str]) -> str:
        found.append("hf_ token")
        return "hf_" + REDACTED

    text = HF_TOKEN_RE.sub(hf, text)

    def bearer(match: re.Match[str]) -> str:
        if match.group(2) == REDACTED:
            return match.group(0)
        found.append("bearer token")
        return match.group(1) + REDACTED

    text = BEARER_RE.sub(bearer, text)
    return text, found


def find_secrets(text: str) -> list[str]:
    """What in a text still looks like a secret (names and patterns, never the values)."""
    return redact_text(text)[1]


# -- errors ----------------------------------------------------------------------------------


class BundleInvalid(HarnessError):
    """A bundle failed verification; each problem says which file and why."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems

    def __str__(self) -> str:
        return super().__str__() + "\n" + "\n".join(f"  - {p}" for p in self.problems)


# -- helpers ---------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """SHA-256 hex digest of bytes."""
    return hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every regular file under root as a POSIX relative path, sorted."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def repo_root() -> Path:
    """The source tree this harness runs from (where images/ and .git live, if anywhere)."""
    return Path(harness.__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root()), *args], capture_output=True, text=True, timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """The harness source's git revision, whether it has uncommitted changes, and its origin."""
    revision = _git("rev-parse", "HEAD")
    dirty = None
    if revision:
        dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    return {"revision": revision, "dirty": dirty, "origin": _git("remote", "get-url", "origin")}


def _slug(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("_") or "image"


# -- create ----------------------------------------------------------------------------------


@dataclass
class Created:
    """What ``create`` wrote."""

    path: Path
    files: int
    redactions: list[tuple[str, str]]  # (file, name) without values
    notes: list[str] = field(default_factory=list)


def _pip_freeze(image_id: str) -> tuple[str | None, str]:
    """``pip freeze`` inside an image through the Docker engine, or None and why not."""
    try:
        from harness.controller.runtimes.docker import connect

        client = connect()
    except EnvironmentProblem as e:
        return None, f"not captured: {e}"
    try:
        import docker.errors

        client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return None, "not captured: the image is no longer present on this machine"
    except Exception as e:  # noqa: BLE001 - the engine may fail in many ways
        return None, f"not captured: {type(e).__name__}: {e}"
    try:
        out = client.containers.run(
            image_id, ["-m", "pip", "freeze", "--all"], entrypoint="python", remove=True,
            network_mode="none", stdout=True, stderr=False,
        )
    except Exception as e:  # noqa: BLE001
        return None, f"not captured: pip freeze failed in the image ({type(e).__name__}: {e})"
    return out.decode("utf-8", "replace"), "captured with `python -m pip freeze --all` in the image"


def _images(study_dir: Path, manifest: Manifest, plan: Any, *, pip_freeze: bool,
            dest: Path) -> list[dict[str, Any]]:
    """Write each used image's Dockerfile and package lists; return their descriptions."""
    from harness.controller.images import RECIPES

    by_tag: dict[str, dict[str, Any]] = {}
    for rec in manifest.runs:
        image: ImageInfo | None = rec.image
        if image is None:
            continue
        exp = plan.experiment(rec.experiment_id)
        entry = by_tag.setdefault(image.tag, {
            "tag": image.tag, "ids": set(), "digests": set(), "backend": exp.backend,
            "device": exp.device, "runs": [],
        })
        if image.id:
            entry["ids"].add(image.id)
        if image.digest:
            entry["digests"].add(image.digest)
        entry["runs"].append(rec.run_id)
    out = []
    for tag, entry in sorted(by_tag.items()):
        folder = dest / "images" / _slug(tag)
        folder.mkdir(parents=True, exist_ok=True)
        rel = f"{PROVENANCE}/images/{_slug(tag)}"
        item: dict[str, Any] = {
            "tag": tag, "id": sorted(entry["ids"])[0] if entry["ids"] else None,
            "ids_seen": sorted(entry["ids"]), "digest": next(iter(sorted(entry["digests"])), None),
            "backend": entry["backend"], "device": entry["device"], "runs": entry["runs"],
        }
        recipe = RECIPES.get(entry["backend"])
        dockerfile = repo_root() / "images" / (recipe.image if recipe else "") / "Dockerfile"
        if recipe and dockerfile.is_file():
            shutil.copyfile(dockerfile, folder / "Dockerfile")
            item["dockerfile"] = f"{rel}/Dockerfile"
        else:
            item["dockerfile"] = None
            item["dockerfile_note"] = f"no Dockerfile at {dockerfile}"
        packages = _packages_from_results(study_dir, entry["runs"])
        if packages:
            (folder / "packages.txt").write_text(packages, encoding="utf-8")
            item["packages"] = f"{rel}/packages.txt"
        item["pip_freeze"] = None
        if pip_freeze and item["id"]:
            text, note = _pip_freeze(item["id"])
            item["pip_freeze_note"] = note
            if text is not None:
                (folder / "pip-freeze.txt").write_text(text, encoding="utf-8")
                item["pip_freeze"] = f"{rel}/pip-freeze.txt"
        out.append(item)
    return out


def _packages_from_results(study_dir: Path, run_ids: list[str]) -> str:
    """The agent's in-environment package list (name==version), from the runs' results."""
    lists: dict[str, list[str]] = {}
    for run_id in run_ids:
        path = study_dir / "runs" / run_id / "result.json"
        if not path.exists():
            continue
        try:
            env = json.loads(path.read_text(encoding="utf-8")).get("environment", {})
        except (OSError, json.JSONDecodeError):
            continue
        pkgs = env.get("packages") or {}
        text = "".join(f"{k}=={v}\n" for k, v in sorted(pkgs.items()))
        lists.setdefault(text, []).append(run_id)
    if not lists:
        return ""
    if len(lists) == 1:
        return next(iter(lists))
    parts = [f"# runs {', '.join(runs)}\n{text}" for text, runs in lists.items()]
    return "# the runs report different package lists\n" + "\n".join(parts)


def _scrub(root: Path) -> list[tuple[str, str]]:
    """Redact secrets in every text file under root; refuse when a binary file holds one."""
    redactions: list[tuple[str, str]] = []
    refused: list[str] = []
    for rel in _files(root):
        path = root / rel
        data = path.read_bytes()
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES and b"\x00" not in data:
            new, found = redact_text(data.decode("utf-8", "replace"))
            if found:
                path.write_text(new, encoding="utf-8")
                redactions.extend((rel, name) for name in found)
        elif suffix == ".parquet":
            found = find_secrets(pd.read_parquet(path).to_csv(index=False))
            if found:
                refused.append(f"{rel}: holds {', '.join(sorted(set(found)))}")
        elif HF_TOKEN_RE.search(data.decode("latin-1")):
            refused.append(f"{rel}: holds a hf_ token in binary data")
    if refused:
        raise UserInputError(
            "refusing to bundle: binary files hold secret-looking values that cannot be "
            "redacted; remove them from the study folder first", problems=refused,
        )
    return redactions


def _reviewers(name: str, bundle_name: str, study: dict[str, Any], prov: dict[str, Any],
               plan: Any) -> str:
    git = prov["git"]
    rev = git["revision"] or "(unknown: the harness was not run from a git checkout)"
    origin = git["origin"] or "<the harness repository>"
    dirty = " (with uncommitted changes: the exact source is not in git)" if git["dirty"] else ""
    models = sorted({e.experiment.model for e in plan.experiments})
    lines = [
        f"# Reviewing study bundle `{bundle_name}`",
        "",
        f"Study **{study.get('name', plan.study)}**: {str(study.get('description', '')).strip()}",
        "",
        f"- {len(plan.experiments)} experiments x {plan.execution.cycles} cycles = "
        f"{len(plan.runs)} planned runs; swept: {', '.join(plan.axes) or 'nothing'}",
        f"- made by harness {prov['harness_version']}, git revision `{rev}`{dirty}",
        f"- bundled {prov['created_at']} on {prov['host']['platform']}",
        "",
        "## 1. Verify the bundle",
        "",
        "```sh",
        f"harness bundle verify {bundle_name}",
        "```",
        "",
        "This checks every file against SHA256SUMS (a changed byte, a missing or an added file "
        "fails), validates every result.json and manifest.json against its schema version, "
        "recomputes summary.csv from the raw results, and checks that every planned run is "
        "accounted for (done with a result, or failed with a reason). Without the harness:",
        "",
        "```sh",
        f"tar xzf {bundle_name} && cd {name} && sha256sum -c SHA256SUMS",
        "```",
        "",
        "## 2. Get the same harness",
        "",
        "```sh",
        f"git clone {origin} harness && cd harness && git checkout {git['revision'] or 'REVISION'}",
        "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'",
        "```",
        "",
        "## 3. The images",
        "",
    ]
    if prov["images"]:
        for img in prov["images"]:
            lines += [
                f"- `{img['tag']}` ({img['backend']}, {img['device']}): id `{img['id']}`, "
                f"digest `{img['digest'] or 'none (built locally, never pushed)'}`; Dockerfile "
                f"`{img.get('dockerfile') or 'not bundled'}`; packages "
                f"`{img.get('packages') or 'n/a'}`; pip freeze "
                f"`{img.get('pip_freeze') or img.get('pip_freeze_note', 'n/a')}`",
                "",
                "  ```sh",
                f"  docker image inspect {img['tag']} --format '{{{{.Id}}}}'   # same id: same image",
                f"  harness images build --backend {img['backend']} --device {img['device']}"
                "   # else rebuild it",
                f"  docker run --rm --entrypoint python {img['tag']} -m pip freeze --all "
                f"| diff - {name}/{img.get('pip_freeze') or img.get('packages') or 'packages.txt'}",
                "  ```",
                "",
            ]
        lines.append(
            "A rebuilt image gets a new id; reproduce uses the original id when this machine "
            "still has it and says so when it falls back to the tag."
        )
    else:
        lines.append(
            f"The runs used the {prov['runner']} runner: no container image; the agent ran in "
            "the host's Python environment (its packages are in "
            f"`{PROVENANCE}/environment/packages.txt`)."
        )
    lines += [
        "",
        "## 4. The model",
        "",
        "The experiments load: " + ", ".join(f"`{m}`" for m in models) + ". A hub id is read "
        "from the local Hugging Face cache ($HF_HOME); a path is read relative to the folder "
        "you run from. The demo's random-weight model is made with "
        "`harness model tiny models/tiny`.",
        "",
        "## 5. Reproduce",
        "",
        "```sh",
        f"harness bundle reproduce {bundle_name} --runs 4     # a sample of the runs",
        f"harness bundle reproduce {bundle_name}              # every planned run",
        f"harness bundle reproduce {bundle_name} --runner docker   # or local",
        "```",
        "",
        "It re-runs the runs with the study's own settings and prints, per experiment and "
        "headline figure, the original mean with its 95 % interval, the new value, their ratio, "
        "whether the new value lies in the original confidence interval, and whether it lies "
        "in the 95 % prediction interval for a new mean (the fairer test for a few new runs). "
        "Energy needs the same kind of hardware sensor (NVML or RAPL) as the original.",
        "",
    ]
    return "\n".join(lines)


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
    notes: list[str] = []
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
        images = _images(study_dir, rep.manifest, rep.plan, pip_freeze=pip_freeze, dest=prov_dir)
        if not images:
            packages = _packages_from_results(study_dir, [r.run_id for r in rep.manifest.runs])
            if packages:
                (prov_dir / "environment").mkdir()
                (prov_dir / "environment" / "packages.txt").write_text(packages, encoding="utf-8")
        for img in images:
            if img.get("pip_freeze_note") and not img.get("pip_freeze"):
                notes.append(f"image {img['tag']}: pip freeze {img['pip_freeze_note']}")
        prov = {
            "bundle_format": BUNDLE_FORMAT,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "study": rep.manifest.study,
            "study_folder": name,
            "harness_version": harness.__version__,
            "harness_version_of_study": rep.manifest.harness_version,
            "git": git_info(),
            "runner": rep.manifest.runner,
            "host": {"python": sys.version.split()[0], "platform": platform.platform()},
            "result_schema_version": RESULT_SCHEMA_VERSION,
            "manifest_schema_version": MANIFEST_SCHEMA_VERSION,
            "images": images,
        }
        study_raw = read_yaml(root / "study.yaml")
        study_raw = study_raw if isinstance(study_raw, dict) else {}
        (root / REVIEWERS).write_text(
            _reviewers(name, output.name, study_raw, prov, rep.plan), encoding="utf-8")
        (prov_dir / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n",
                                                  encoding="utf-8")
        redactions = _scrub(root)
        lines = [f"{file}\t{name}" for file, name in redactions]
        (prov_dir / "redactions.txt").write_text(
            "# values redacted when this bundle was made (file, tab, name; no values kept)\n"
            + "".join(f"{line}\n" for line in lines), encoding="utf-8")
        leftover = [f"{rel}: {', '.join(sorted(set(found)))}"
                    for rel in _files(root) if (root / rel).suffix.lower() in TEXT_SUFFIXES
                    and (found := find_secrets((root / rel).read_text("utf-8", "replace")))]
        if leftover:  # a redaction that did not hold is a bug; never ship it
            raise EnvironmentProblem("secret-looking values survived redaction: "
                                     + "; ".join(leftover))
        files = _files(root)
        sums = "".join(f"{_sha256_file(root / rel)}  {rel}\n" for rel in files)
        (root / SUMS).write_text(sums, encoding="utf-8")
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            for rel in [*files, SUMS]:
                info = tar.gettarinfo(root / rel, arcname=f"{name}/{rel}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with (root / rel).open("rb") as fh:
                    tar.addfile(info, fh)
        partial.replace(output)
    return Created(output, len(files) + 1, redactions, notes)


# -- verify ----------------------------------------------------------------------------------


@dataclass
class Verified:
    """A bundle that passed verification: what was checked."""

    root_name: str
    files: int
    runs_done: int
    runs_failed: int
    runs_pending: int
    checks: list[str]


def _safe_members(tar: tarfile.TarFile) -> tuple[list[tarfile.TarInfo], list[str]]:
    members, problems = [], []
    for m in tar.getmembers():
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts:
            problems.append(f"unsafe path in the archive: {m.name}")
        elif not (m.isfile() or m.isdir()):
            problems.append(f"not a regular file in the archive: {m.name} (links are refused)")
        else:
            members.append(m)
    return members, problems


def extract(bundle: Path, dest: Path) -> Path:
    """Safely extract a bundle (regular files only, no links or escapes); return its root."""
    try:
        tar = tarfile.open(bundle, "r:gz")
    except FileNotFoundError as e:
        raise UserInputError(f"{bundle}: no such file") from e
    except (tarfile.TarError, OSError) as e:
        raise BundleInvalid(f"{bundle}: not a readable tar.gz bundle",
                            problems=[f"{type(e).__name__}: {e}"]) from e
    with tar:
        members, problems = _safe_members(tar)
        if problems:
            raise BundleInvalid(f"{bundle}: refusing to extract", problems=problems)
        tops = {PurePosixPath(m.name).parts[0] for m in members}
        if len(tops) != 1:
            raise BundleInvalid(f"{bundle}: expected one top folder",
                                problems=[f"top-level entries: {', '.join(sorted(tops))}"])
        kwargs: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **kwargs)  # noqa: S202 - members checked above
    return dest / tops.pop()


def _check_sums(root: Path, problems: list[str]) -> int:
    sums_path = root / SUMS
    if not sums_path.exists():
        problems.append(f"{SUMS} is missing: nothing can be checked against it")
        return 0
    listed: dict[str, str] = {}
    for n, line in enumerate(sums_path.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            problems.append(f"{SUMS} line {n}: not '<sha256>  <path>': {line[:80]!r}")
            continue
        listed[rel] = digest
    present = set(_files(root)) - {SUMS}
    for rel, digest in sorted(listed.items()):
        if rel not in present:
            problems.append(f"missing file: {rel} is listed in {SUMS} but not in the bundle")
            continue
        actual = _sha256_file(root / rel)
        if actual != digest:
            problems.append(f"changed file: {rel}: SHA-256 is {actual[:16]}..., "
                            f"{SUMS} says {digest[:16]}...")
    for rel in sorted(present - set(listed)):
        problems.append(f"added file: {rel} is in the bundle but not in {SUMS}")
    return len(listed)


def _schema_problem(rel: str, e: ValidationError) -> list[str]:
    return [
        f"schema violation: {rel}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: "
        f"{err['msg']}"
        for err in e.errors()[:10]
    ]


def _major(version: str) -> str:
    return str(version).split(".", 1)[0]


def _validate_json(root: Path, rel: str, model: type[Any], current: str,
                   problems: list[str]) -> Any | None:
    path = root / rel
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"missing file: {rel}")
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problems.append(f"schema violation: {rel}: not valid JSON ({e})")
        return None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if version is None or _major(version) != _major(current):
        problems.append(f"schema violation: {rel}: schema_version {version!r}; this harness "
                        f"reads {_major(current)}.x")
        return None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems.extend(_schema_problem(rel, e))
        return None


def _same(a: Any, b: Any) -> bool:
    fa, fb = pd.to_numeric(pd.Series([a, b]), errors="coerce")
    if math.isnan(fa) and math.isnan(fb):
        return True
    if math.isnan(fa) or math.isnan(fb):
        return False
    return math.isclose(fa, fb, rel_tol=AGGREGATE_RTOL, abs_tol=AGGREGATE_ATOL)


def _check_aggregates(root: Path, problems: list[str]) -> None:
    from harness.analysis.stats import METRICS, STAT_SUFFIXES, summarize
    from harness.analysis.table import collect

    path = root / "summary.csv"
    if not path.exists():
        problems.append("missing file: summary.csv (the report's aggregates)")
        return
    try:
        recomputed = summarize(collect(root))
    except (ValueError, KeyError) as e:
        problems.append(f"aggregates: cannot recompute from the raw results: {e}")
        return
    stored = pd.read_csv(path)
    if "experiment_id" not in stored.columns:
        problems.append("aggregates: summary.csv has no experiment_id column")
        return
    stored["experiment_id"] = stored["experiment_id"].astype(str)
    stored = stored.set_index("experiment_id")
    recomputed = recomputed.set_index("experiment_id")
    for exp_id in sorted(set(recomputed.index) ^ set(stored.index)):
        where = "summary.csv" if exp_id in stored.index else "the raw results"
        problems.append(f"aggregates: experiment {exp_id} appears only in {where}")
    for exp_id in recomputed.index.intersection(stored.index):
        for col in ["runs_done", *(f"{m}_{s}" for m in METRICS for s in STAT_SUFFIXES)]:
            if col not in stored.columns:
                problems.append(f"aggregates: summary.csv lacks column {col}")
                return
            new, old = recomputed.at[exp_id, col], stored.at[exp_id, col]
            if not _same(new, old):
                problems.append(f"aggregates: summary.csv experiment {exp_id} {col} is {old!r} "
                                f"but the raw results give {new!r}")


def verify_root(root: Path) -> Verified:
    """Verify an extracted bundle; raise BundleInvalid listing every problem found."""
    from harness.config.sweep import Plan

    problems: list[str] = []
    checks: list[str] = []
    n_files = _check_sums(root, problems)
    checks.append(f"checksums of {n_files} files against {SUMS}")
    manifest = _validate_json(root, "manifest.json", Manifest, MANIFEST_SCHEMA_VERSION, problems)
    plan = None
    try:
        plan = Plan.model_validate_json((root / "plan.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append("missing file: plan.json")
    except ValidationError as e:
        problems.extend(_schema_problem("plan.json", e))
    done = failed = pending = 0
    if manifest is not None and plan is not None:
        records = {r.run_id: r for r in manifest.runs}
        planned = {r.run_id for r in plan.runs}
        for run in plan.runs:
            rec = records.get(run.run_id)
            run_dir = f"runs/{run.run_id}"
            if rec is None:
                problems.append(f"missing run: {run.run_id} is planned but manifest.json has no "
                                "record of it")
            elif rec.status == "done":
                done += 1
                if not (root / run_dir / "result.json").exists():
                    problems.append(f"missing run: {run.run_id} is done in manifest.json but "
                                    f"{run_dir}/result.json is not in the bundle")
            elif rec.status in ("failed", "interrupted"):
                failed += 1
                if not rec.reason and not (root / run_dir / "error.json").exists():
                    problems.append(f"missing run: {run.run_id} is {rec.status} with no reason "
                                    f"in manifest.json and no {run_dir}/error.json")
            else:
                pending += 1
        for run_id in sorted(set(records) - planned):
            problems.append(f"unplanned run: {run_id} is in manifest.json but not in plan.json")
        runs_root = root / "runs"
        on_disk = {p.name for p in runs_root.iterdir() if p.is_dir()} if runs_root.exists() else set()
        for run_id in sorted(on_disk - planned - {".attempts"}):
            problems.append(f"unplanned run: runs/{run_id} is not in plan.json")
        checks.append(f"{len(plan.runs)} planned runs accounted for ({done} done, {failed} "
                      f"failed, {pending} not run)")
    for result_path in sorted(root.glob("runs/*/result.json")):
        rel = result_path.relative_to(root).as_posix()
        result = _validate_json(root, rel, ExperimentResult, RESULT_SCHEMA_VERSION, problems)
        if result is not None and result.run.run_id != result_path.parent.name:
            problems.append(f"schema violation: {rel}: run.run_id is {result.run.run_id!r}, "
                            f"not the folder's name")
    checks.append("manifest.json, plan.json and every result.json validate against their schema")
    if any(p.startswith("schema violation") for p in problems):
        problems.append("aggregates: not recomputed, because some files violate their schema")
    elif manifest is not None and plan is not None:
        _check_aggregates(root, problems)
        checks.append("summary.csv matches the aggregates recomputed from the raw results")
    if problems:
        raise BundleInvalid(f"bundle {root.name} failed verification "
                            f"({len(problems)} problems)", problems=problems)
    return Verified(root.name, n_files, done, failed, pending, checks)


def verify(bundle: Path) -> Verified:
    """Extract a bundle to a temporary folder and verify it (see ``verify_root``)."""
    with tempfile.TemporaryDirectory(prefix="harness-verify-") as tmp:
        return verify_root(extract(Path(bundle), Path(tmp)))


# -- reproduce -------------------------------------------------------------------------------


@dataclass
class Reproduction:
    """A reproduction: where it ran, the comparison table, and what to know about it."""

    study_dir: Path
    comparison: pd.DataFrame
    notes: list[str]
    runs_done: int
    runs_total: int


def sample_runs(plan: Any, n: int | None, seed: int) -> list[Any]:
    """All planned runs, or n of them spread over as many experiments as possible (seeded)."""
    runs = list(plan.runs)
    if n is None or n >= len(runs):
        return runs
    rng = random.Random(seed)
    by_exp: dict[str, list[Any]] = {}
    for run in runs:
        by_exp.setdefault(run.experiment_id, []).append(run)
    order = list(by_exp)
    rng.shuffle(order)
    for group in by_exp.values():
        rng.shuffle(group)
    chosen: list[Any] = []
    while len(chosen) < n:
        for exp_id in order:
            if by_exp[exp_id] and len(chosen) < n:
                chosen.append(by_exp[exp_id].pop())
    return sorted(chosen, key=lambda r: r.position)


def _prediction_interval(mean: float, std: float, n: int, m: int) -> tuple[float, float]:
    """95 % interval for the mean of m new runs, from n original runs (Student's t)."""
    from scipy import stats as sps

    if n < 2 or m < 1 or not math.isfinite(std):
        return math.nan, math.nan
    half = float(sps.t.ppf(0.975, n - 1)) * std * math.sqrt(1 / n + 1 / m)
    return mean - half, mean + half


def compare(original: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Original vs new headline figures per experiment: ratio, inside the CI, inside the PI."""
    from harness.analysis.stats import param_columns

    orig = original.set_index("experiment_id")
    rows = []
    for _, row in new.iterrows():
        exp_id = row["experiment_id"]
        if exp_id not in orig.index or row["runs_done"] == 0:
            continue
        o = orig.loc[exp_id]
        for metric, label in HEADLINE.items():
            old_mean, new_mean = o.get(f"{metric}_mean"), row.get(f"{metric}_mean")
            n_old, n_new = int(o.get(f"{metric}_n", 0)), int(row.get(f"{metric}_n", 0))
            low, high = o.get(f"{metric}_ci95_low"), o.get(f"{metric}_ci95_high")
            known = n_old > 0 and n_new > 0 and pd.notna(old_mean) and pd.notna(new_mean)
            pi_low, pi_high = (_prediction_interval(old_mean, o.get(f"{metric}_std"), n_old, n_new)
                               if known else (math.nan, math.nan))
            rows.append({
                "experiment_id": exp_id,
                **{c: row[c] for c in param_columns(new)},
                "metric": metric,
                "label": label,
                "original_mean": old_mean,
                "original_ci95_low": low,
                "original_ci95_high": high,
                "original_n": n_old,
                "new_mean": new_mean,
                "new_n": n_new,
                "ratio_new_to_original": new_mean / old_mean if known and old_mean else math.nan,
                "within_original_ci95": (bool(low <= new_mean <= high)
                                         if known and pd.notna(low) else None),
                "original_pi95_low": pi_low,
                "original_pi95_high": pi_high,
                "within_original_pi95": (bool(pi_low <= new_mean <= pi_high)
                                         if known and math.isfinite(pi_low) else None),
            })
    return pd.DataFrame(rows)


def reproduce(
    bundle: Path,
    *,
    runs: int | None = None,
    runner: Runner | None = None,
    output_dir: Path | None = None,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
    observer: Observer = ignore,
) -> Reproduction:
    """Verify a bundle, re-run its study (or a sample) with the same images, and compare."""
    from harness.analysis import report as report_mod
    from harness.analysis.stats import summarize
    from harness.analysis.table import collect
    from harness.config.load import load_study
    from harness.config.sweep import Plan, expand
    from harness.controller.lifecycle import new_study_dir
    from harness.controller.loop import StudyRun
    from harness.controller.runtimes import select_runtime
    from harness.results import manifest as manifest_io
    from harness.results.io import atomic_write_json

    if runs is not None and runs < 1:
        raise UserInputError(f"--runs: expected at least 1, got {runs}")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harness-reproduce-") as tmp:
        root = extract(Path(bundle), Path(tmp))
        verify_root(root)
        study = load_study(root / "study.yaml")
        plan = Plan.model_validate_json((root / "plan.json").read_text(encoding="utf-8"))
        manifest = Manifest.model_validate_json((root / "manifest.json").read_text("utf-8"))
        original = summarize(collect(root))
        try:
            replanned = {e.id for e in expand(study).experiments}
            if replanned != {e.id for e in plan.experiments}:
                notes.append("this harness expands study.yaml into different experiment ids than "
                             "the bundle's plan; the bundle's plan.json is used as is")
        except UserInputError as e:
            notes.append(f"this harness no longer accepts study.yaml ({e}); using plan.json")
        chosen = sample_runs(plan, runs, plan.execution.seed)
        exp_ids = {r.experiment_id for r in chosen}
        sub_plan = Plan(
            study=plan.study, axes=plan.axes,
            experiments=[e for e in plan.experiments if e.id in exp_ids],
            runs=[r.model_copy(update={"position": i}) for i, r in enumerate(chosen)],
            execution=plan.execution, warnings=plan.warnings,
        )
        runtime, why = select_runtime(runner or study.execution.runner)
        images = dict(study.images)
        if runtime.name == "docker" and manifest.runner == "local":
            notes.append("the original ran with the local runner (no image); this reproduction "
                         "runs in containers of the study's default images")
        if runtime.name == "docker":
            used: dict[str, set[tuple[str, str | None]]] = {}
            for rec in manifest.runs:
                if rec.image and rec.experiment_id in exp_ids:
                    name = str(plan.experiment(rec.experiment_id).backend)
                    used.setdefault(name, set()).add((rec.image.tag, rec.image.id))
            for backend_name, seen in used.items():
                if len(seen) != 1:
                    notes.append(f"{backend_name}: the original runs used {len(seen)} images; using "
                                 "the study's tag")
                    continue
                tag, image_id = next(iter(seen))
                if image_id and runtime.prepare(image_id) is not None:
                    images[backend_name] = image_id
                    notes.append(f"{backend_name}: using the original image {tag} ({image_id[:19]})")
                elif runtime.prepare(tag) is not None:
                    images[backend_name] = tag
                    notes.append(f"{backend_name}: the original image {image_id} is not here; using "
                                 f"{tag} as it is now (a different build)")
                else:
                    notes.append(f"{backend_name}: neither image {image_id} nor tag {tag} is here; "
                                 f"build it with 'harness images build --backend {backend_name}'")
        elif manifest.runner == "docker":
            notes.append("the original ran in containers; the local runner uses this Python "
                         "environment instead of the bundle's images")
        study = study.model_copy(update={"images": images})
        out_root = Path(output_dir) if output_dir else Path(study.output_dir)
        new_dir = new_study_dir(out_root, f"{study.name}-reproduce")
        shutil.copyfile(root / "study.yaml", new_dir / "study.yaml")
        atomic_write_json(new_dir / "plan.json", sub_plan)
        new_manifest = manifest_io.new_manifest(sub_plan, root / "study.yaml")
        new_manifest.runner = runtime.name
        new_manifest.runner_reason = f"{why}; reproducing bundle {Path(bundle).name}"
        manifest_io.save(new_manifest, new_dir)
        original.to_csv(new_dir / "original-summary.csv", index=False)
    if progress:
        progress("info", {"study_dir": new_dir, "runner": runtime.name, "why": why,
                          "runs": len(chosen), "of": len(plan.runs)})
    final = StudyRun(study, sub_plan, new_dir, runtime, new_manifest,
                     observer=observer).execute()
    rep = report_mod.build(new_dir)
    comparison = compare(original, rep.summary)
    comparison.to_csv(new_dir / "comparison.csv", index=False)
    done = sum(r.status == "done" for r in final.runs)
    return Reproduction(new_dir, comparison, notes, done, len(final.runs))

