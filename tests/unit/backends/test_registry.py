"""The backend registry: built-in packages, entry-point plug-ins, checks, and stable ids."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import registry
from harness.backends.engine import Engine
from harness.backends.registry import PluginError, checked_spec
from harness.backends.spec import BackendOptions, BackendSpec
from harness.errors import EnvironmentProblem, UserInputError

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"


def spec(**kw) -> BackendSpec:
    data = {"name": "x", "options": BackendOptions, "engine": "m:C", "precisions": {"cpu": ("fp32",)}}
    data.update(kw)
    return BackendSpec(**data)


def test_built_in_backends_are_listed_by_rank_and_the_first_is_the_default():
    assert registry.names()[:3] == ("pytorch", "vllm", "tensorrt_llm")
    assert registry.default_name() == "pytorch"
    assert registry.broken() == {}


def test_an_unknown_backend_gets_a_did_you_mean():
    with pytest.raises(UserInputError, match=r"unknown backend 'vlm' \(did you mean 'vllm'\?\)"):
        registry.get("vlm")
    assert registry.find("vlm") is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "is a object, not a BackendSpec"),
        (spec(name="y"), "registered as 'x' but its spec says 'y'"),
        (spec(options=dict), "options must subclass"),
        (spec(engine="no-colon"), "engine must be a 'module:Class' string"),
    ],
)
def test_entries_are_checked_before_use(value, message):
    with pytest.raises(PluginError, match=message):
        checked_spec("x", value, "entry point x")


def test_the_engine_class_must_be_an_engine():
    bad = spec(engine="harness.backends.spec:BackendSpec")
    with pytest.raises(EnvironmentProblem, match="is not an Engine subclass"):
        registry.engine_class(bad)
    missing = spec(engine="no_such_module_here:Engine")
    with pytest.raises(EnvironmentProblem, match="cannot be imported in this environment"):
        registry.engine_class(missing)
    assert issubclass(registry.engine_class(registry.get("vllm")), Engine)  # vLLM not imported


def run_with_plugins(tmp_path: Path, entries: str, code: str) -> dict:
    site = tmp_path / "site"
    dist = site / "plugins_for_test-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugins-for-test\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.backends]\n" + entries)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(PLUGINS), str(REPO)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120, cwd=tmp_path)
    return json.loads(out.stdout)


IDS = """
import json
from pathlib import Path
from harness.backends import registry
from harness.config.load import plan_study
ids = {f: sorted(e.id for e in plan_study(Path(f))[1].experiments)
       for f in ("studies/demo.yaml", "studies/backends-cpu.yaml", "studies/sweep.yaml")}
print(json.dumps({"names": registry.names(), "broken": registry.broken(), "ids": ids}))
"""


def test_a_plugin_registers_through_entry_points_and_changes_no_existing_id(tmp_path: Path):
    code = IDS.replace('Path(f)', f'Path({str(REPO)!r}) / f')
    with_plugin = run_with_plugins(tmp_path / "a", "toy = toy_backend:SPEC\n", code)
    without = run_with_plugins(tmp_path / "b", "", code)
    assert with_plugin["names"] == [*without["names"], "toy"]
    assert with_plugin["ids"] == without["ids"]


def test_a_broken_plugin_is_reported_not_fatal(tmp_path: Path):
    code = "import json; from harness.backends import registry; " \
           "print(json.dumps({'names': registry.names(), 'broken': registry.broken(), " \
           "'why': registry.unknown_backend('ghost')}))"
    out = run_with_plugins(tmp_path, "ghost = no_such_package:SPEC\n"
                                     "vllm = toy_backend:SPEC\n", code)
    assert "ghost" not in out["names"] and "pytorch" in out["names"]
    assert "cannot import 'no_such_package'" in out["broken"]["ghost"]
    assert "is already registered" in out["broken"]["vllm (entry point vllm = toy_backend:SPEC)"]
    assert out["why"].startswith("backend 'ghost' is registered but cannot be used")
