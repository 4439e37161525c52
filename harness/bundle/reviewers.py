"""REVIEWERS.md: the exact commands a reviewer runs to verify and reproduce one bundle."""

from __future__ import annotations

from typing import Any

from harness.bundle.layout import PROVENANCE


def _images_section(name: str, prov: dict[str, Any]) -> list[str]:
    """How to check, rebuild and compare each image the runs used."""
    if not prov["images"]:
        return [
            f"The runs used the {prov['runner']} runner: no container image; the agent ran in "
            "the host's Python environment (its packages are in "
            f"`{PROVENANCE}/environment/packages.txt`)."
        ]
    lines: list[str] = []
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
    return lines


def reviewers_text(name: str, bundle_name: str, study: dict[str, Any], prov: dict[str, Any],
                   plan: Any) -> str:
    """The REVIEWERS.md of a bundle of study folder ``name`` written to ``bundle_name``."""
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
    lines += _images_section(name, prov)
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
