"""The agent as a process in serving mode: SIGTERM stops it and its server, wherever it is."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _serving import PLUGINS

from harness.models import write_tiny_model
from harness.results.reasons import ExitCode

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment where the fake serving backend is registered through entry points."""
    site = tmp_path_factory.mktemp("site")
    dist = site / "fake_serving_for_test-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-serving-for-test\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text("[harness.backends]\nfakeserve = fake_serving:SPEC\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(PLUGINS), str(REPO)]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def start_agent(out: Path, tiny: Path, env: dict[str, str], spec_extra: dict | None = None,
                experiment_extra: dict | None = None, **options) -> subprocess.Popen:
    experiment = {
        "model": str(tiny), "backend": "fakeserve", "device": "cpu", "precision": "fp32",
        "mode": "serving", "workload": {"input_tokens": 8, "output_tokens": 400},
        "measurement": {"baseline_s": 0, "loaded_idle_s": 0},
        "serving": {"request_rate": 5, "num_requests": 50, "warmup_requests": 0,
                    "ready_timeout_s": 60},
        "fakeserve": {"step_s": 0.02, **options},
        **(experiment_extra or {}),
    }
    spec = {"run": {"study": "t", "experiment_id": "x", "cycle": 1, "run_id": "x-c1"},
            "experiment": experiment, "model_path": str(tiny), "runner": "local",
            **(spec_extra or {})}
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(spec))
    return subprocess.Popen([sys.executable, "-m", "harness.agent", "--config",
                             str(out / "config.json")], env=env, cwd=out,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("when", ["under load", "before ready"])
def test_sigterm_to_the_agent_stops_its_server(tmp_path, tiny, env, when):
    options = {"never_ready": True} if when == "before ready" else {}
    agent = start_agent(tmp_path / "run", tiny, env, **options)
    pid_file = tmp_path / "run" / "server" / "server.pid"
    wait_for(pid_file)
    time.sleep(1.0)  # under load: requests are streaming now
    server = int(pid_file.read_text())
    assert alive(server)
    agent.send_signal(signal.SIGTERM)
    output = agent.communicate(timeout=60)[0].decode()
    assert agent.returncode == ExitCode.INTERRUPTED, output
    error = json.loads((tmp_path / "run" / "error.json").read_text())
    assert error["reason"] == "interrupted"
    assert not alive(server)
    assert "[agent] server stopped" in (tmp_path / "run" / "server.log").read_text()


def test_a_served_run_through_the_agent_writes_its_result(tmp_path, tiny, env):
    agent = start_agent(tmp_path / "run", tiny, env, step_s=0.002)
    output = agent.communicate(timeout=120)[0].decode()
    assert agent.returncode == 0, output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["serving"]["requests_ok"] == 50 and result["experiment"]["mode"] == "serving"
    assert "serving 5 requests/s" in output


def test_a_served_run_measures_simulated_gpus_against_their_truth(tmp_path, tiny, env):
    # the study's simulated GPUs reach the serving path too; the load generator's view of the
    # server (waiting: prefill, streaming: decode, none: loaded idle) drives their power
    from harness.testing.simgpu.config import SimulatedGpus
    from harness.testing.simgpu.truth import TRUTH_FILE, read_truth, total_energy_between

    gpus = SimulatedGpus(count=1, counter_period_ms=5)
    library = {"kind": "simulated", "simulated": gpus.model_dump(mode="json"),
               "truth_file": str(tmp_path / "run" / TRUTH_FILE)}
    load = {"workload": {"input_tokens": 8, "output_tokens": 40},
            "serving": {"request_rate": 20, "num_requests": 24, "warmup_requests": 0,
                        "ready_timeout_s": 60}}
    agent = start_agent(tmp_path / "run", tiny, env, step_s=0.01, experiment_extra=load,
                        spec_extra={"gpu_library": library, "gpu_uuids": [gpus.uuid(0)]})
    output = agent.communicate(timeout=120)[0].decode()
    assert agent.returncode == 0, output
    # read as JSON: this test process does not have the fake backend registered
    e = json.loads((tmp_path / "run" / "result.json").read_text())["energy"]
    truth = read_truth(tmp_path / "run" / TRUTH_FILE)
    assert e["energy_method"] == "simulated" and e["devices"][0]["energy_method"] == "simulated"
    states = [s for _, s in truth.device(0).states]
    assert states[:2] == ["no_context", "loaded_idle"] and {"prefill", "decode"} <= set(states)
    assert states[-1] == "no_context"  # the server stopped
    t0, t1 = e["phase_edges_s"]["window"]  # the steady window the figures were cropped to
    assert e["energy_j"] == pytest.approx(total_energy_between(truth, [gpus.uuid(0)], t0, t1),
                                          rel=0.1)


def test_the_agents_sigterm_leaves_no_unhandled_ctrl_c_mark():
    # CPython marks a process as dying of an unhandled Ctrl+C (exit -2 instead of the 130 the
    # agent returns) when a plain KeyboardInterrupt passes through exec'd string code, caught or
    # not; dataclass creation in an engine's imports is such code. The agent's own
    # KeyboardInterrupt is a subclass, which CPython does not mark.
    code = """
import ctypes, os, signal
from harness.agent.__main__ import _interrupt_on_sigterm
_interrupt_on_sigterm()
try:
    exec("import os, signal\\nos.kill(os.getpid(), signal.SIGTERM)\\nwhile True: pass")
except KeyboardInterrupt as e:
    print(type(e).__name__, e)
print(ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value)
"""
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert got.stdout.splitlines() == ["StoppedBySignal stopped by signal SIGTERM", "0"], got
