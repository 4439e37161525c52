"""Layering: the host never imports an engine, the agent never imports docker, and no module
outside the backend packages names a backend."""

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import harness

REPO = Path(__file__).resolve().parents[2]
ENGINE_LIBRARIES = ("torch", "transformers", "vllm", "tensorrt_llm")
HOST_ONLY = ("docker", "typer", "rich")
#: words that name a built-in backend (its name, its image, its engine library)
BACKEND_WORDS = re.compile(r"\b(pytorch|vllm|tensorrt[-_]?llm|trtllm)\b", re.IGNORECASE)

PROBE = """
import importlib, json, sys
name = sys.argv[1]
importlib.import_module(name)
print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))
"""


def all_modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(harness.__path__, "harness.")
                  if not info.name.endswith("__main__"))


def loaded_by(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, module], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=120)
    return set(json.loads(out.stdout))


def test_every_module_imports_without_loading_an_engine():
    modules = all_modules()
    assert "harness.backends.vllm.engine" in modules and "harness.cli" in [
        m.rsplit(".", 1)[0] if m.startswith("harness.cli.") else m for m in modules]
    offenders = {}
    for module in modules:
        engines = loaded_by(module) & set(ENGINE_LIBRARIES)
        if engines:
            offenders[module] = sorted(engines)
    assert offenders == {}


def test_the_agent_never_imports_the_host_side():
    agent = [m for m in all_modules()
             if m.startswith("harness.agent") or re.match(r"harness\.backends\.\w+\.engine$", m)]
    assert "harness.agent.protocol" in agent
    probe = "import importlib, json, sys\n" + "".join(
        f"importlib.import_module({m!r})\n" for m in agent
    ) + "import harness.agent.__main__\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=120)
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert loaded & set(HOST_ONLY) == set()
    assert not any(m.startswith("harness.controller") or m.startswith("harness.cli")
                   for m in json.loads(out.stdout))


def test_backend_names_appear_only_in_the_backend_packages():
    from harness.backends import registry

    packages = {REPO / "harness" / "backends" / spec.name for spec in registry.specs()}
    found = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        if any(p in path.parents for p in packages):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BACKEND_WORDS.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
