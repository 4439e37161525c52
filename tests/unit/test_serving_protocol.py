"""Serving mode's whole protocol in this process, against the fake server as a real process."""

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest
from _serving import PLUGINS

from harness.agent.protocol import run
from harness.agent.sensors.base import Sampler, Sensor, WindowReading
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.serving import protocol
from harness.analysis.serving import timeline
from harness.analysis.table import result_row
from harness.backends.spec import ServerLaunch, ServingSupport
from harness.config.experiment import Experiment
from harness.errors import RunFailure
from harness.models import write_tiny_model
from harness.results.reasons import FailureReason
from harness.results.schema import RunInfo, RunSpec

REPO = Path(__file__).resolve().parents[2]
POWER_W = 150.0
PERIOD_S = 0.01


class SteadySensor(Sensor):
    """A GPU drawing a constant 150 W on the real clock; its counter updates every 10 ms."""

    method = "nvml_counter"

    @property
    def devices(self) -> list[str]:
        return ["gpu0"]

    def counter(self, t: float) -> float:
        return POWER_W * math.floor(t / PERIOD_S) * PERIOD_S

    def begin(self, interval_ms: int) -> None:
        self.rows: list[dict] = []
        self.t0 = time.perf_counter()
        self.start = self.counter(self.t0)

        def sample(tick: int) -> None:
            now = time.perf_counter()
            self.rows.append({"tick": tick, "t_s": now - self.t0, "device": "gpu0",
                              "power_w": POWER_W, "energy_j": self.counter(now) - self.start})

        self.sampler = Sampler(sample, interval_ms)
        self.sampler.start()

    def end(self) -> WindowReading:
        now = time.perf_counter()
        self.sampler.stop()
        return WindowReading(method="nvml_counter", duration_s=now - self.t0,
                             energy_j={"gpu0": self.counter(now) - self.start},
                             samples=list(self.rows), methods={"gpu0": "nvml_counter"},
                             gpu_processes={"gpu0": []})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def fake_support(*extra: str) -> ServingSupport:
    def launch(exp, model_path, port, folder):
        return ServerLaunch(argv=(sys.executable, "-m", "fake_serving.server", "--port", str(port),
                                  "--step-s", "0.004", "--max-running", "4", *extra),
                            model_name="fake",
                            env={"PYTHONPATH": os.pathsep.join([str(PLUGINS), str(REPO)])})
    return ServingSupport(launch=launch, metrics_path="/metrics",
                          running_gauge="fake:num_requests_running")


def spec_of(tiny: Path, **serving) -> RunSpec:
    exp = Experiment(model=str(tiny), backend="vllm", device="cpu", precision="fp32",
                     mode="serving", workload={"input_tokens": 12, "output_tokens": 16},
                     measurement={"baseline_s": 0.3, "loaded_idle_s": 0.3, "min_window_s": 0.5,
                                  "sample_interval_ms": 20},
                     serving={"request_rate": 40, "num_requests": 40, "warmup_requests": 2,
                              "ready_timeout_s": 20, **serving},
                     slo={"ttft_s": 0.05, "tpot_s": 0.05}, vllm={"max_num_seqs": 4})
    return RunSpec(run=RunInfo(study="t", experiment_id=exp.id, cycle=1, run_id="r"),
                   experiment=exp, model_path=str(tiny))


def server_gone(out: Path) -> bool:
    pid = int((out / "server" / "server.pid").read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_served_load_is_measured_over_its_steady_window(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "support_of", lambda spec: fake_support())
    result = run(spec_of(tiny), tmp_path, sensor=SteadySensor())
    s = result.serving
    assert s is not None and s.requests_ok == 40 and s.window_found and s.max_running_requests == 4
    assert 0 < s.window_start_s < s.window_end_s < s.load_s
    assert result.timings.window_s == pytest.approx(s.window_end_s - s.window_start_s, rel=1e-3)
    e = result.energy
    u = e.uncertainty["energy_j"]
    assert abs(e.energy_j - POWER_W * result.timings.window_s) <= u.expanded_random
    assert "window_edges" in {t.name for t in u.terms}
    assert e.j_per_request == pytest.approx(e.j_per_output_token * 16)  # x mean output tokens
    assert result.tokens.output_tokens == pytest.approx(
        result.throughput.output_tokens_per_s * result.timings.window_s)
    assert s.achieved_request_rate == pytest.approx(40, rel=0.02)
    assert s.mean_running_requests is not None and 0 < s.mean_running_requests <= 4
    assert s.slo_attainment is not None and s.j_per_good_request is not None
    assert result.latency.ttft.n == 40 and result.latency.tpot.n == 40
    assert result.backend_info["engine_version"] == "fake-1"
    assert result.prefill.measured is False and "serving mode" in result.prefill.reason
    lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert len(lines) == 40 and {x["status"] for x in lines} == {"ok"}
    # the rule: from the B-th first token to the (N - B - 1)-th finish, B = 4, N = 40
    assert s.window_start_s == pytest.approx(sorted(x["first_token_s"] for x in lines)[4 - 1])
    assert s.window_end_s == pytest.approx(sorted(x["end_s"] for x in lines)[40 - 4 - 1 - 1])
    # tokens over exactly the window: its arrivals (requests.jsonl rounds them to 1 us)
    edges = round(s.window_start_s, 6), round(s.window_end_s, 6)
    arrivals = [(t, n) for x in lines for t, n in x["arrivals"]]
    inside = sum(n for t, n in arrivals if edges[0] < t < edges[1])
    assert inside <= result.tokens.output_tokens <= inside + sum(
        n for t, n in arrivals if t in edges)
    assert result.tokens.output_tokens > 0
    phases = {row.split(",")[0] for row in (tmp_path / "timeseries.csv").read_text().splitlines()[1:]}
    assert phases == {"idle", "loaded_idle", "load"}
    assert "[agent] server stopped" in (tmp_path / "server.log").read_text()
    assert server_gone(tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["serving"]["window_found"] is True
    # the report's view of it: the table's serving columns and the run's timeline with power
    row = result_row(result)
    assert row["mode"] == "serving" and row["steady_window"] is True
    assert row["j_per_good_request"] == s.j_per_good_request
    assert timeline(tmp_path, tmp_path / "timeline.png") is None
    assert (tmp_path / "timeline.png").stat().st_size > 10_000


def test_a_load_too_small_for_the_rule_is_measured_whole_and_marked(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(protocol, "support_of", lambda spec: fake_support())
    result = run(spec_of(tiny, num_requests=5, request_rate=None), tmp_path,
                 sensor=UnavailableSensor("none here"))
    assert result.serving is not None and not result.serving.window_found
    assert result.steady_state.verdict == "not_steady"
    assert "no steady window" in result.steady_state.reason
    assert "no_steady_state" in {w.code for w in result.warnings}
    assert result.energy.energy_method == "unavailable" and result.energy.energy_j is None
    assert "at least B + 2 = 6 sent" in result.serving.window_reason  # B = 4, N = 5
    assert result.tokens.output_tokens == 5 * 16  # the whole load


@pytest.mark.parametrize(("extra", "serving", "reason", "message"), [
    (("--never-ready",), {"ready_timeout_s": 1.5}, FailureReason.SERVER_NOT_READY,
     "did not answer /health with 200 within 1.5 s"),
    (("--crash-after", "10"), {}, FailureReason.SERVER_CRASHED, "exited with status 3 under load"),
    (("--error-every", "7"), {}, FailureReason.REQUEST_ERRORS, "5 of 40 requests failed"),
])
def test_server_faults_fail_the_run_with_their_reason(tiny, tmp_path, monkeypatch, extra,
                                                      serving, reason, message):
    monkeypatch.setattr(protocol, "support_of", lambda spec: fake_support(*extra))
    spec = spec_of(tiny, warmup_requests=0, **serving)
    with pytest.raises(RunFailure, match=message) as e:
        run(spec, tmp_path, sensor=UnavailableSensor("none here"))
    assert e.value.reason == reason
    assert (tmp_path / "server.log").exists() and server_gone(tmp_path)
    if reason == FailureReason.REQUEST_ERRORS:  # every request is kept with its status
        lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
        assert sum(x["status"] == "error" for x in lines) == 5
    if reason == FailureReason.SERVER_CRASHED:  # the requests up to the crash are kept too
        assert "requests.jsonl" in str(e.value)
        lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
        assert [x["index"] for x in lines] == list(range(40))
        status = [x["status"] for x in lines]
        assert 1 <= status.count("ok") <= 10  # the server answered 10 requests, then exited
        assert status.count("error") >= 1 and status.count("not_sent") >= 1
        assert all(x["output_tokens"] == 16 and x["end_s"] > x["sent_s"] > 0
                   for x in lines if x["status"] == "ok")
        assert not any(x["first_token_in_window"] for x in lines)


def test_a_requests_file_is_read_before_the_server_starts(tiny, tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(protocol, "support_of", lambda spec: started.append(1) or fake_support())
    spec = spec_of(tiny, dataset="gone.jsonl")
    with pytest.raises(Exception, match="no such requests file"):
        run(spec, tmp_path, sensor=UnavailableSensor("none here"))
    assert started == [] and not (tmp_path / "server.log").exists()
