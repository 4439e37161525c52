"""``harness images``: build the backend images, check them, prune those no study uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from harness.cli.options import DEFAULT_BACKEND, BackendOpt, DeviceOpt, backend_devices
from harness.cli.render import console
from harness.errors import UserInputError
from harness.results.reasons import ExitCode

app = typer.Typer(help="Build and check the backend images; prune those no study uses.",
                  no_args_is_help=True)


def _pairs(backend: str | None, device: str | None, study: Path | None) -> list[tuple[str, str]]:
    """The (backend, device) images to build: one named, or each one a study uses."""
    if study is None:
        backend, device = backend or DEFAULT_BACKEND, device or "cpu"
        devices = backend_devices()[backend]
        if device not in devices:
            raise UserInputError(f"--device: backend {backend!r} has no {device!r} image "
                                 f"(devices with an image: {', '.join(devices) or 'none'})")
        return [(backend, device)]
    if backend is not None or device is not None:
        raise UserInputError("--study: give either --study or --backend/--device, not both")
    from harness.config.load import plan_study
    from harness.controller.preflight import images_needed

    pairs = images_needed(*plan_study(study))
    if not pairs:
        console.print(f"{escape(str(study))}: every run uses an image named in its `images:` "
                      "block; nothing to build")
    return pairs


@app.command("build")
def images_build(
    backend: BackendOpt = None,
    device: DeviceOpt = None,
    study: Annotated[
        Path | None,
        typer.Option(help="Build every default image this study's runs use "
                     "(not with --backend/--device)."),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Registry-less: Debian base + host wheelhouse.")
    ] = False,
) -> None:
    """Build backend images through the Docker engine."""
    from harness.controller.images import build_image, image_tag, variant

    repo_root = Path(__file__).resolve().parents[2]
    for name, dev in _pairs(backend, device, study):
        registry_less = offline
        if offline and study is not None and not variant(name, dev).offline:
            registry_less = False  # a study may mix CPU images and vendor-based CUDA ones
            console.print(f"{image_tag(name, dev)} has no registry-less recipe: building it from "
                          f"its vendor base {variant(name, dev).base}")
        info = build_image(name, dev, offline=registry_less, repo_root=repo_root,
                           progress=lambda line: console.print(line, markup=False))
        console.print(f"[green]built[/] {info.tag} ({info.id})")


@app.command("prune")
def images_prune(
    results: Annotated[
        list[Path] | None,
        typer.Option("--results", metavar="DIR",
                     help="Also keep the images of the study folders under DIR (repeatable); "
                     "results/ is always read."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Remove keep-tagged images even when no study "
                           "manifest was read (without it prune refuses).")
    ] = False,
) -> None:
    """Remove harness images no study folder uses; keep (and tag) those one does."""
    from harness.controller.images.retention import DEFAULT_ROOT, prune
    from harness.controller.runtimes.docker import connect

    roots = list(dict.fromkeys([DEFAULT_ROOT, *(results or [])]))
    pruned = prune(connect(), roots, dry_run=dry_run, force=force)
    console.print("study folders read: " + ", ".join(
        f"{escape(str(r))}/*/manifest.json" + ("" if r.is_dir() else " (no such folder)")
        for r in pruned.roots) + f"; {len(pruned.manifests)} study manifests read")
    if not pruned.manifests:
        console.print("[yellow]no study manifest was read[/]: every keep tag looks unused; name "
                      "the folders your studies are in with --results DIR")
    for problem in pruned.unreadable:
        console.print(f"[yellow]unreadable[/] {escape(problem)}")
    verb = "would remove" if dry_run else "removed"
    for d in pruned.decisions:
        what = f"{d.image_id[:19]} ({', '.join(d.tags) or 'untagged'})"
        action = "[green]keep[/]" if d.action == "keep" else f"[red]{verb}[/]"
        console.print(f"{action} {escape(what)}: {escape(d.reason)}")
    kept = sum(d.action == "keep" for d in pruned.decisions)
    console.print(f"{kept} kept, {len(pruned.decisions) - kept} {verb} "
                  "(only images built by the harness or tagged harness/kept are considered)")

@app.command("check")
def images_check(
    backend: BackendOpt = None,
    device: DeviceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full findings as JSON.")] = False,
) -> None:
    """Check a built image without a GPU: engine, CUDA build, packages, the agent's refusal."""
    import json
    from dataclasses import asdict

    from harness.controller.images.check import check_image

    (name, dev), = _pairs(backend, device, None)
    found = check_image(name, dev)
    if as_json:
        typer.echo(json.dumps({**asdict(found), "ok": found.ok}, indent=2, default=str))
    else:
        build = found.build
        size = f"{found.size_bytes / 1e9:.2f} GB" if found.size_bytes else "size unknown"
        console.print(f"{escape(found.tag)} ({found.image_id[:19]}, {size}, built "
                      f"{escape(found.labels.get('harness.build', 'unknown'))})")
        console.print(f"  engine {escape(str(build.get('engine')))} "
                      f"{escape(str(build.get('engine_version')))}, torch {escape(str(build.get('torch')))}, "
                      f"CUDA runtime {escape(str(build.get('cuda_runtime')))}, "
                      f"cuDNN {escape(str(build.get('cudnn')))}")
        for check in found.checks:
            mark = "[green]ok[/]" if check["ok"] else "[red]fail[/]"
            console.print(f"{mark:>20}  {escape(check['name'])}: {escape(str(check['detail']))}")
    if not found.ok:
        raise typer.Exit(ExitCode.FAILED)
