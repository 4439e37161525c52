"""REVIEWERS.md: the exact commands a reviewer runs to verify and reproduce one bundle."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from harness.bundle.layout import PROVENANCE
from harness.model_identity import PATH_PREFIXES


def _images_section(name: str, bundle_name: str, prov: dict[str, Any]) -> list[str]:
    """How to load (or check and rebuild) each image the runs used."""
    if not prov["images"]:
        return [
            f"The runs used the {prov['runner']} runner: no container image; the agent ran in "
            "the host's Python environment (its packages are in "
            f"`{PROVENANCE}/environment/packages.txt`)."
        ]
    lines: list[str] = []
    for img in prov["images"]:
        archives = img.get("archives") or []
        lines += [
            f"- `{img['tag']}` ({img['backend']}, {img['device']}): id `{img['id']}`, "
            f"digest `{img['digest'] or 'none (built locally, never pushed)'}`; Dockerfile "
            f"`{img.get('dockerfile') or 'not bundled'}`; packages "
            f"`{img.get('packages') or 'n/a'}`; pip freeze "
            f"`{img.get('pip_freeze') or img.get('pip_freeze_note', 'n/a')}`",
            "",
            "  ```sh",
        ]
        lines += [f"  docker load -i {name}/{a['file']}   # {a['id']}" for a in archives]
        lines += [
            f"  docker image inspect {img['tag']} --format '{{{{.Id}}}}'   # {img['id']}: the "
            "same image",
        ]
        if not archives:
            lines.append(f"  harness images build --backend {img['backend']} --device "
                         f"{img['device']}   # else rebuild it (a new id)")
        lines += ["  ```", ""]
    carried = any(img.get("archives") for img in prov["images"])
    lines.append(
        f"The bundle carries these images: `harness bundle reproduce {bundle_name}` loads "
        "each one the engine lacks (`docker load`) and runs in exactly it, by id; verify "
        "already checked that each archive holds the recorded id." if carried else
        "The bundle does not carry the images (made without `--with-images`). Reproduce runs "
        "in the original image by id when this engine has it; otherwise in the tag as it is "
        "now, and it names both ids (recorded and used) in its output and comparison.csv.")
    return lines


def _source_section(name: str, prov: dict[str, Any]) -> list[str]:
    """How to get the harness the runs used: the bundled archive, or its remote."""
    src = prov.get("source") or {}
    lines: list[str] = []
    archive, rev = src.get("archive"), src.get("revision")
    if archive:
        folder = PurePosixPath(archive).name.removesuffix(".tar.gz")
        lines += [
            f"The bundle carries `git archive` of revision `{rev}`:",
            "",
            "```sh",
            f"tar xzf {name}/{archive} && cd {folder}",
            "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]'",
            "```",
            "",
        ]
    remote = src.get("remote")
    if remote and rev and _reachable(remote):
        lines += [f"It came from `{remote}`: `git clone {remote} harness && "
                  f"cd harness && git checkout {rev}` gives the same tree.", ""]
    elif remote:
        lines += [f"Its recorded origin, `{remote}`, is a path on the author's machine: use "
                  "the archive above.", ""]
    lines += [f"- {n}" for n in src.get("notes", [])]
    return lines or ["The bundle records no harness source (the study ran outside git)."]


def _reachable(remote: str) -> bool:
    """Whether a git remote names a server (URL or scp-like), not a folder of one machine."""
    return "://" in remote and not remote.startswith("file://") or (
        "@" in remote and ":" in remote.split("@", 1)[1])


def _model_line(m: dict[str, Any]) -> str:
    where = (f"hub id `{m['hub_id']}` at revision `{m['revision']}`" if m.get("source") == "hub"
             else f"the folder `{m['ref']}`")
    return (f"- `{m['ref']}`: {where}; {len(m.get('files', []))} files, {m['mode']} fingerprint "
            f"`{m.get('fingerprint') or 'none: ' + str(m.get('note'))}` (runs "
            f"{', '.join(m.get('runs', [])[:4])}{' ...' if len(m.get('runs', [])) > 4 else ''})")


def _model_section(prov: dict[str, Any], models: list[str]) -> list[str]:
    recorded = prov.get("models") or []
    lines = [_model_line(m) for m in recorded] or [
        "- " + ", ".join(f"`{m}`" for m in models) + ": the runs recorded no fingerprint."]
    return lines + [
        "",
        "Reproduce finds each model before any container starts: `--model NAME=PATH` where "
        "you keep it; else a folder name under `--model-root DIR`; else a relative name from "
        f"the folder the study ran from (`{prov.get('working_dir')}`) and then from your "
        "current folder; a hub id from your Hugging Face cache ($HF_HOME). It fingerprints "
        "your copy the same way (each file listed in provenance.json `models`) and refuses a "
        "copy that differs, naming each file, unless you pass `--accept-model-mismatch` "
        "(comparison.csv then says so).",
    ]


def _prompt_section(name: str, prov: dict[str, Any]) -> list[str]:
    entries = prov.get("workload") or []
    if not entries:
        return ["The experiments use synthetic prompts (generated from the recorded seed)."]
    return [f"- `{e['ref']}`: " + (f"`{name}/{e['file']}`, " if e.get("file") else "")
            + (f"sha256 `{e['sha256']}`" if e.get("sha256") else "")
            + (f" ({e['note']})" if e.get("note") else "") for e in entries]


def _reproduce_command(bundle_name: str, models: list[str], prov: dict[str, Any]) -> str:
    """The reproduce command, mapping each model folder (not hub ids) to where you keep it."""
    sources = {m["ref"]: m.get("source") for m in prov.get("models") or []}
    folders = [m for m in models if sources.get(m, "folder" if m.startswith(PATH_PREFIXES)
                                                   else None) == "folder"]
    maps = " ".join(f"--model {m}=/path/to/your/{PurePosixPath(m).name}" for m in folders)
    return f"harness bundle reproduce {bundle_name} --runs 4 {maps}".rstrip()


def reviewers_text(name: str, bundle_name: str, study: dict[str, Any], prov: dict[str, Any],
                   plan: Any) -> str:
    """The REVIEWERS.md of a bundle of study folder ``name`` written to ``bundle_name``."""
    git = prov["git"]
    rev = git["revision"] or "(unknown: the harness was not run from a git checkout)"
    dirty = " (with uncommitted changes: the exact source is not in git)" if git["dirty"] else ""
    models = sorted({e.experiment.model for e in plan.experiments})
    command = _reproduce_command(bundle_name, models, prov)
    lines = [
        f"# Reviewing study bundle `{bundle_name}`",
        "",
        f"Study **{study.get('name', plan.study)}**: {str(study.get('description', '')).strip()}",
        "",
        f"- {len(plan.experiments)} experiments x {plan.execution.cycles} cycles = "
        f"{len(plan.runs)} planned runs; swept: {', '.join(plan.axes) or 'nothing'}",
        f"- bundled by harness {prov['harness_version']}, git revision `{rev}`{dirty}",
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
        "recomputes summary.csv from the raw results, checks that every planned run is "
        "accounted for (done with a result, or failed with a reason), that each image archive "
        "holds the image id the runs recorded and that each prompt file has its recorded "
        "SHA-256. Without the harness:",
        "",
        "```sh",
        f"tar xzf {bundle_name} && cd {name} && sha256sum -c SHA256SUMS",
        "```",
        "",
        "## 2. Get the same harness",
        "",
        *_source_section(name, prov),
        "",
        "## 3. The images",
        "",
        *_images_section(name, bundle_name, prov),
        "",
        "## 4. The models",
        "",
        *_model_section(prov, models),
        "",
        "## 5. The prompts",
        "",
        *_prompt_section(name, prov),
        "",
        "## 6. Reproduce",
        "",
        "```sh",
        f"{command}     # a sample of the runs",
        f"{command.replace(' --runs 4', '')}     # every planned run",
        "```",
        "",
        "Before any container starts it verifies the bundle, finds and fingerprints each "
        "model, loads the carried images and checks that the engine answers and every image "
        "is present; it then says which model folder and which image (by id) each backend "
        "uses. The new study folder (under the study's output_dir, or `--output-dir`) also "
        "holds `reproduce.json` with those choices.",
        "",
        "## 7. Read the comparison",
        "",
        "Reproduce prints, and writes to `comparison.csv` in the new study folder, one row per "
        "experiment and headline figure: the original mean with its 95 % confidence interval "
        "(`original_mean`, `original_ci95_low/high`, `original_n`), the new mean "
        "(`new_mean`, `new_n`), their ratio, whether the new mean lies in the original "
        "confidence interval (`within_original_ci95`) and in the 95 % prediction interval for "
        "a mean of that many new runs (`within_original_pi95`: the fairer test for a few new "
        "runs). `original_image_id` and `image_id` are the images the original and the new "
        "runs ran in (`same_image`), `model_check` is the fingerprint check (`match`, or "
        "`mismatch: ...` when accepted). Energy needs the same kind of hardware sensor (NVML "
        "or RAPL) as the original; where either side could not measure it, it stays empty.",
        "",
    ]
    return "\n".join(lines)
