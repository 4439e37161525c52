"""The load generator against the fake server: schedules, concurrency, tokens, errors, gauge."""

import pytest
from _serving import Options, fake_server

from harness.agent.serving.loadgen import (
    CANCELLED,
    Gauge,
    LoadGenerator,
    RequestRecord,
    completion_payload,
    gauge_value,
)
from harness.agent.serving.requests import PlannedRequest, arrival_offsets
from harness.config.experiment import Decoding
from harness.config.serving import Serving
from harness.errors import RunFailure
from harness.results.reasons import FailureReason


def planned(n: int, tokens: int = 5, offsets: list[float] | None = None) -> list[PlannedRequest]:
    return [PlannedRequest(i, [1, 2, 3, 4], tokens, offsets[i] if offsets else None)
            for i in range(n)]


def generator(port: int, **kw) -> LoadGenerator:
    return LoadGenerator(port, "m", Decoding(), request_timeout_s=kw.pop("timeout", 30.0), **kw)


def in_flight_max(records: list[RequestRecord]) -> int:
    edges = sorted([(r.sent_s, 1) for r in records] + [(r.end_s, -1) for r in records],
                   key=lambda e: (e[0], e[1]))
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def test_an_open_loop_sends_on_schedule():
    offsets = arrival_offsets(Serving(request_rate=40.0), 80, 3)
    with fake_server(Options(step_s=0.002, max_running=8)) as server:
        got = generator(server.port).run_sync(planned(80, offsets=offsets))
    assert all(r.status == "ok" and r.output_tokens == 5 for r in got.records)
    lags = [r.sent_s - r.due_s for r in got.records]
    assert min(lags) >= 0 and max(lags) < 0.05
    span = max(r.sent_s for r in got.records) - got.start_s
    assert 80 / span == pytest.approx(40.0, rel=0.02)
    assert got.client_cpu_s is not None and got.client_cpu_s > 0


def test_concurrency_caps_an_open_loop_and_drives_a_closed_one():
    with fake_server(Options(step_s=0.005, max_running=16)) as server:
        capped = generator(server.port).run_sync(planned(20, offsets=[0.0] * 20), concurrency=3)
        closed = generator(server.port).run_sync(planned(20), concurrency=4)
    assert in_flight_max(capped.records) <= 3
    assert in_flight_max(closed.records) == 4
    assert all(r.due_s is None for r in closed.records)
    assert all(r.status == "ok" for r in capped.records + closed.records)


def test_duration_stops_sending_and_leaves_the_rest_unsent():
    with fake_server(Options(step_s=0.002)) as server:
        got = generator(server.port).run_sync(planned(40, offsets=[i * 0.05 for i in range(40)]),
                                              duration_s=0.5)
    sent = [r for r in got.records if r.status != "not_sent"]
    assert 8 <= len(sent) <= 12 and all(r.status == "ok" for r in sent)
    assert all(r.sent_s is None for r in got.records if r.status == "not_sent")


def test_tokens_delivered_together_count_by_the_servers_running_usage():
    with fake_server(Options(step_s=0.002, burst=3)) as server:
        got = generator(server.port).run_sync(planned(4, tokens=10))
    r = got.records[0]
    assert r.status == "ok" and r.output_tokens == 10 and r.usage_output_tokens == 10
    assert [n for _, n in r.arrivals] == [3, 3, 3, 1]
    assert len(r.timing().token_times_s) == 10 and len(r.timing().itl_s) == 3


def test_without_running_usage_a_burst_is_a_token_count_mismatch():
    with fake_server(Options(step_s=0.002, burst=2, usage=False)) as server:
        got = generator(server.port).run_sync(planned(2, tokens=6))
    assert all(r.status == "error" for r in got.records)
    assert got.records[0].error == "arrived 3 tokens, expected 6"


def test_errors_and_timeouts_are_recorded_per_request():
    with fake_server(Options(step_s=0.002, error_every=3)) as server:
        got = generator(server.port).run_sync(planned(9))
    failed = [r for r in got.records if r.status == "error"]
    assert len(failed) == 3 and all("HTTP 500" in r.error for r in failed)
    with fake_server(Options(step_s=0.2)) as server:
        slow = generator(server.port, timeout=0.3).run_sync(planned(1, tokens=20))
    assert slow.records[0].status == "timeout"


def test_the_running_gauge_is_polled_during_the_load():
    with fake_server(Options(step_s=0.01, max_running=2)) as server:
        gen = generator(server.port, gauge=Gauge("/metrics", "fake:num_requests_running", 0.05))
        got = gen.run_sync(planned(6, tokens=30, offsets=[0.0] * 6))
    assert got.gauge and max(v for _, v in got.gauge) == 2.0 and got.gauge_errors == 0


def test_a_server_that_exits_under_load_ends_it():
    calls = {"n": 0}

    def exited():
        calls["n"] += 1
        return 9 if calls["n"] > 2 else None

    with fake_server(Options(step_s=0.05)) as server:
        gen = generator(server.port, server_exit=exited)
        with pytest.raises(RunFailure, match="exited with status 9 under load") as e:
            gen.run_sync(planned(4, tokens=200, offsets=[0.0] * 4))  # all sent at once
    assert e.value.reason == FailureReason.SERVER_CRASHED
    # the records stay with the generator: the requests cut off are errors with their times
    assert gen.result is not None and len(gen.result.records) == 4
    for r in gen.result.records:
        assert r.status == "error" and r.error == CANCELLED and r.end_s >= r.sent_s
        assert 0 < r.output_tokens < 200
    assert gen.result.end_s == max(r.end_s for r in gen.result.records)


def test_payloads_and_gauges():
    p = completion_payload("m", [5, 6], 3, Decoding())
    assert p["prompt"] == [5, 6] and p["max_tokens"] == p["min_tokens"] == 3
    assert p["ignore_eos"] and p["stream"] and p["temperature"] == 0.0 and "top_p" not in p
    assert p["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    sampled = completion_payload("m", [5], 3, Decoding(temperature=0.7, top_p=0.9, top_k=5))
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 5)
    text = ('# HELP x\nvllm:num_requests_running{engine="0"} 3.0\n'
            'vllm:num_requests_running{engine="1"} 2.0\nvllm:num_requests_running_x 9\n')
    assert gauge_value(text, "vllm:num_requests_running") == 5.0
    assert gauge_value(text, "absent") is None
