"""Layering: the host never imports an engine, the agent never imports docker, and no module
outside the backend packages names a backend."""

import json
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
from harness.backends import registry
from harness.backends.spec import BackendOptions, BackendSpec, ImageRecipe

REPO = Path(__file__).resolve().parents[2]
ENGINE_LIBRARIES = ("torch", "transformers", "vllm", "tensorrt_llm")
HOST_ONLY = ("docker", "typer", "rich")
#: names of built-in engines' tools that are neither a backend's name nor its image's
#: (trtllm-serve, trtllm-build); the names and images come from the registry
ALIASES = ("trtllm",)

PROBE = """
import importlib, json, sys
name = sys.argv[1]
importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
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
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # one process per module
        loaded = dict(zip(modules, pool.map(loaded_by, modules), strict=True))
    offenders = {m: sorted(engines) for m, found in loaded.items()
                 if (engines := {n.split(".")[0] for n in found} & set(ENGINE_LIBRARIES))}
    assert offenders == {}
    # analysis reads results: it never loads the controller (manifests live in harness.results)
    analysis = {m: sorted(n for n in found if n.startswith("harness.controller"))
                for m, found in loaded.items() if m.startswith("harness.analysis")}
    assert "harness.analysis.report" in analysis
    assert {m: c for m, c in analysis.items() if c} == {}


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


def backend_words(specs: Iterable[BackendSpec]) -> re.Pattern[str]:
    """Words that name a registered backend: its name and its image's, ``-`` and ``_`` alike."""
    words = set(ALIASES)
    for spec in specs:
        for name in (spec.name, spec.recipe.image if spec.recipe else None):
            if name:
                words.add(r"[-_]?".join(re.escape(p) for p in re.split(r"[-_]", name)))
    return re.compile(r"\b(" + "|".join(sorted(words)) + r")\b", re.IGNORECASE)


def backend_mentions(root: Path, specs: Iterable[BackendSpec]) -> list[str]:
    """Lines of .py files under root/harness naming a backend outside that backend's package."""
    specs = tuple(specs)
    words = backend_words(specs)
    packages = {root / "harness" / "backends" / spec.name for spec in specs}
    found = []
    for path in sorted((root / "harness").rglob("*.py")):
        if any(p in path.parents for p in packages):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if words.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_every_registered_backend_and_image_name_is_a_checked_word():
    specs = registry.specs()
    words = backend_words(specs)
    assert len(specs) >= 3
    for spec in specs:
        assert words.search(f"x = {spec.name!r}"), spec.name
        if spec.recipe:
            assert words.search(f"tag = 'harness/{spec.recipe.image}:cuda'"), spec.recipe.image


def test_a_planted_backend_name_is_caught(tmp_path: Path):
    new = BackendSpec(name="my_engine", options=BackendOptions, engine="my_engine.e:Engine",
                      precisions={"cpu": ("fp32",)},
                      recipe=ImageRecipe(image="my-engine", variants={}))
    own = tmp_path / "harness" / "backends" / "my_engine"
    own.mkdir(parents=True)
    (own / "__init__.py").write_text('NAME = "my_engine"\n', encoding="utf-8")
    (tmp_path / "harness" / "runner.py").write_text(
        'import os\nif backend == "my_engine":\n    tag = "harness/my-engine:cpu"\n'
        'image = "MyEngine"\n', encoding="utf-8")
    assert backend_mentions(tmp_path, [*registry.specs(), new]) == [
        'harness/runner.py:2: if backend == "my_engine":',
        'harness/runner.py:3: tag = "harness/my-engine:cpu"',
        'harness/runner.py:4: image = "MyEngine"',
    ]
    assert backend_mentions(tmp_path, registry.specs()) == []


def test_backend_names_appear_only_in_the_backend_packages():
    assert backend_mentions(REPO, registry.specs()) == []
