"""Checks run inside a built image, without a GPU: ``python -m harness.agent.imagecheck``.

Prints one JSON object: the engine's build (versions, the CUDA runtime it was built for) and a
verdict per check; exits 0 when every check passed. ``harness images check`` runs it in each
image (controller/images/check.py) together with a cuda run the agent must refuse.

  engine        the engine imports and describes its build (Engine.build_info)
  cuda_runtime  the CUDA runtime the engine was built for is the one the image's label names
  requirements  every requirement the image was built from is installed at a matching version
  pip_check     the installed packages' own dependencies are consistent (``pip check``)
  libraries     every library that the shared objects of the engine, torch and Triton link is
                in the image (the NVIDIA driver's aside: a container with GPUs gets them)
  compiler      a C compiler and the Python headers, which Triton needs to build its kernel
                launchers at run time (only where Triton is installed)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

#: the requirements an image was built from (images/Dockerfile keeps them)
REQUIREMENTS_FILE = Path("/opt/venv/harness-requirements.txt")
#: libraries the NVIDIA container toolkit mounts from the host driver; absent without a GPU
DRIVER_LIBRARIES = re.compile(r"^(libcuda\.so|libnvidia-|libnvcuvid\.so|libcudadebugger\.so)")
_MISSING = re.compile(r"^\s*(\S+) => not found")


@dataclass
class Check:
    """One check's verdict."""

    name: str
    ok: bool
    detail: str


def _packaging() -> Any:
    """The ``packaging.requirements`` module (the image's own, else pip's vendored copy)."""
    import importlib

    try:
        return importlib.import_module("packaging.requirements")
    except ImportError:  # pragma: no cover - every image here has packaging via transformers
        return importlib.import_module("pip._vendor.packaging.requirements")


def requirement_problems(lines: Iterable[str], removed: Iterable[str] = ()) -> list[str]:
    """Requirements not satisfied by the installed distributions (those ``removed`` aside)."""
    requirements = _packaging()
    gone = {_norm(n) for n in removed}
    problems = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue
        req = requirements.Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        if _norm(req.name) in gone:
            continue
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} is not installed (required: {text})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name} {version} does not satisfy {text}")
    return problems


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_problems(removed: Iterable[str] = ()) -> list[str]:
    """``pip check``'s complaints, except those about packages the recipe removed on purpose."""
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         check=False)
    return [] if out.returncode == 0 else complaints(out.stdout + out.stderr, removed)


def complaints(pip_check_output: str, removed: Iterable[str] = ()) -> list[str]:
    """The lines of ``pip check``'s output that name no package in ``removed``."""
    gone = {_norm(n) for n in removed}
    return [ln for ln in pip_check_output.splitlines() if ln.strip()
            and not any(_norm(w) in gone for w in re.findall(r"[A-Za-z0-9_.-]+", ln))]


def unresolved_libraries(
    roots: Iterable[Path], ldd: str = "ldd", shipped: Iterable[Path] = ()
) -> dict[str, list[str]]:
    """Shared objects under ``roots`` -> libraries they link that nothing here provides.

    ``ldd`` resolves each file on its own, but an extension module finds some libraries only
    in the process that imports it (torch loads libtorch and the CUDA libraries of the
    nvidia-* wheels first); a library that ldd misses but a file under ``shipped`` (the
    site-packages folders) provides is therefore found, and only the rest is reported.
    """
    roots = list(roots)
    libs = sorted({lib for root in roots for lib in root.rglob("*.so*")
                   if lib.is_file() and not lib.is_symlink()})
    provided = {lib.name for folder in [*roots, *shipped] for lib in folder.rglob("*.so*")}

    def missing(lib: Path) -> list[str]:
        out = subprocess.run([ldd, str(lib)], capture_output=True, text=True, check=False)
        return [m.group(1) for m in map(_MISSING.match, out.stdout.splitlines())
                if m and not DRIVER_LIBRARIES.match(m.group(1)) and m.group(1) not in provided]

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {str(lib): gone for lib, gone in zip(libs, pool.map(missing, libs), strict=True)
                if gone}


def package_dirs(modules: Iterable[str]) -> list[Path]:
    """The folders of the installed packages ``modules`` (found without importing them)."""
    import importlib.util

    roots: list[Path] = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        root = Path(spec.origin).resolve().parent
        if root not in roots:
            roots.append(root)
    return roots


def compiler_problem() -> str | None:
    """Why Triton could not build a launcher here (no C compiler, no Python.h), or None."""
    cc = shutil.which("cc") or shutil.which("gcc")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    missing = [what for what, ok in (("a C compiler (gcc)", cc), (str(header), header.is_file()))
               if not ok]
    return f"missing {' and '.join(missing)}" if missing else None


def run_checks(
    backend: str, expect_cuda: str | None, removed: list[str]
) -> tuple[dict[str, Any], list[Check]]:
    """The engine's build and every check's verdict."""
    from harness.backends import registry
    from harness.backends.engine import Engine

    checks: list[Check] = []
    try:
        engine = registry.engine_class(registry.get(backend))
        assert issubclass(engine, Engine)
        build = engine.build_info()
        checks.append(Check("engine", True, f"{build['engine']} {build['engine_version']}"))
    except Exception as e:  # noqa: BLE001 - an engine that does not import is the finding
        build = {}
        checks.append(Check("engine", False, f"{type(e).__name__}: {e}"))
    if expect_cuda is not None:
        got = build.get("cuda_runtime")
        checks.append(Check("cuda_runtime", got == expect_cuda,
                            f"built for CUDA {got}; the image's label says {expect_cuda}"))
    reqs = REQUIREMENTS_FILE.read_text().splitlines() if REQUIREMENTS_FILE.is_file() else None
    if reqs is None:
        checks.append(Check("requirements", False, f"{REQUIREMENTS_FILE} is missing"))
    else:
        bad = requirement_problems(reqs, removed)
        checks.append(Check("requirements", not bad, "; ".join(bad) or f"{len(reqs)} satisfied"))
    bad = pip_problems(removed)
    checks.append(Check("pip_check", not bad, "; ".join(bad) or "no broken requirements"))
    # the engine's own extension modules and torch's and Triton's: ldd follows what each links
    # (CUDA libraries from the nvidia-* wheels included); optional plugins such as NVSHMEM's
    # MPI and RDMA transports are loaded only on demand and are left out
    library = str(build.get("engine") or "")
    roots = package_dirs([m for m in (library, "torch", "triton") if m and _has(m)])
    unresolved = unresolved_libraries(roots, shipped={r.parent for r in roots})
    checks.append(Check(
        "libraries", not unresolved,
        "; ".join(f"{k}: {', '.join(v)}" for k, v in unresolved.items())
        or f"every shared library under {', '.join(map(str, roots))} resolves "
        "(driver libraries aside)",
    ))
    if _has("triton"):
        why = compiler_problem()
        checks.append(Check("compiler", why is None, why or "gcc and Python.h for Triton"))
    return build, checks


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    """Run the checks and print them as JSON; 0 when all passed."""
    parser = argparse.ArgumentParser(prog="python -m harness.agent.imagecheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--cuda", help="the CUDA runtime the image's label names")
    parser.add_argument("--removed", default="", help="packages the recipe removed, comma-separated")
    args = parser.parse_args(argv)
    removed = [n for n in args.removed.split(",") if n]
    build, checks = run_checks(args.backend, args.cuda, removed)
    print(json.dumps({"build": build, "checks": [asdict(c) for c in checks]}, default=str))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
