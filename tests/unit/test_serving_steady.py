"""The steady window on synthetic request timelines, counting by arrival, and cropped energy."""

import math

import pytest
from _scripted import ClockedSensor, FakeClock, Timeline

from harness.agent.crop import crop
from harness.agent.serving.loadgen import RequestRecord
from harness.agent.serving.steady import count_window, halves_rates, steady_span, tokens_between
from harness.agent.uncertainty import energy_budget


def record(i: int, sent: float, first: float, step: float, tokens: int, inputs: int = 10,
           burst: int = 1) -> RequestRecord:
    """A finished request: first token at ``first``, then one arrival every ``step``."""
    r = RequestRecord(i, inputs, tokens, sent_s=sent, status="ok")
    t, left = first, tokens
    while left:
        n = min(burst, left)
        r.arrivals.append((t, n))
        left -= n
        t += step
    r.end_s = r.arrivals[-1][0]
    return r


def timeline(n: int = 20) -> list[RequestRecord]:
    """Request i is sent at i s, gets its first token 0.5 s later and 10 tokens 0.1 s apart."""
    return [record(i, float(i), i + 0.5, 0.1, 10) for i in range(n)]


def test_the_window_runs_from_the_bth_first_token_to_the_n_minus_b_minus_1th_finish():
    # ML.ENERGY's RequestTracker: opens when B requests have a first token, closes when
    # N - B - 1 have finished (mlenergy/benchmark/llm/benchmark.py)
    span = steady_span(timeline(20), 4, (0.0, 21.0))
    assert span.found and span.batch == 4
    assert span.start_s == 3.5  # request 3's first token
    assert span.end_s == pytest.approx(15.4)  # request 14's end: 15 of 20 have finished


def test_the_window_closes_on_finishes_not_first_tokens():
    # every request is sent at 0 and gets its first token at once; request i ends at 10 + i:
    # by first tokens there would be no window, by finishes it runs from 1.0 to the 5th end
    records = [record(i, 0.0, 1.0, (9.0 + i) / 9, 10) for i in range(10)]
    span = steady_span(records, 4, (0.0, 20.0))
    assert span.found and (span.start_s, span.end_s) == (1.0, pytest.approx(14.0))


def test_unsorted_first_tokens_and_ends_are_ordered_before_the_rule():
    records = timeline(10)
    records[0].arrivals[0] = (7.75, 1)  # request 0 is slow to start
    records[1].end_s = 9.0  # and request 1 to end
    span = steady_span(records, 2, (0.0, 11.0))
    firsts = sorted(r.first_token_s for r in records)
    ends = sorted(r.end_s for r in records)
    assert (span.start_s, span.end_s) == (firsts[1], ends[10 - 2 - 1 - 1])
    assert span.start_s == 2.5 and span.end_s == pytest.approx(8.4)  # the 7th end: request 7


def test_failed_requests_count_as_finished_and_unsent_ones_not_at_all():
    records = timeline(20)
    records[5].status = "error"  # ML.ENERGY counts a request finished whatever its outcome
    for r in records[17:]:
        r.status, r.arrivals, r.end_s = "not_sent", [], None
    span = steady_span(records, 4, (0.0, 21.0))
    assert span.start_s == 3.5 and span.end_s == pytest.approx(12.4)  # N = 17: the 12th end


@pytest.mark.parametrize(("n", "batch"), [(5, 4), (4, 4), (2, 1), (3, 2)])
def test_no_window_when_fewer_than_b_plus_2_requests_are_sent(n, batch):
    span = steady_span(timeline(n), batch, (0.0, 30.0))
    assert not span.found and (span.start_s, span.end_s) == (0.0, 30.0)
    assert f"at least B + 2 = {batch + 2} sent" in span.reason


def test_just_enough_requests_give_a_window():
    records = [record(i, 0.0, 1.0 + i / 10, 0.5, 10) for i in range(6)]  # all sent at once
    span = steady_span(records, 4, (0.0, 30.0))
    assert span.found and span.start_s == 1.3 and span.end_s == pytest.approx(5.5)  # 1st end


def test_no_window_when_the_batch_never_runs_full():
    # one request at a time: the first has finished (1.4 s) long before the 4th first token
    span = steady_span(timeline(6), 4, (0.0, 30.0))
    assert not span.found and (span.start_s, span.end_s) == (0.0, 30.0)
    assert "the batch never ran full" in span.reason
def test_no_window_without_a_batch_limit():
    span = steady_span(timeline(20), None, (0.0, 21.0))
    assert not span.found and "no batch limit" in span.reason


def test_only_tokens_arriving_inside_the_window_are_counted():
    records = timeline(20)
    # window [3.5, 15.5): request 3 (first token 3.5) gives all 10; request 2 (2.5 .. 3.4) none;
    # request 15 (15.5 ..) none; request 14 (14.5 .. 15.4) all 10
    assert tokens_between(records[2:3], 3.5, 15.5) == 0
    assert tokens_between(records[3:4], 3.5, 15.5) == 10
    assert tokens_between(records[15:16], 3.5, 15.5) == 0
    straddle = record(99, 3.0, 3.0, 0.1, 10)  # arrivals 3.0 .. 3.9: 5 of them from 3.45 on
    assert tokens_between([straddle], 3.45, 15.5) == 5
    inputs, outputs, finished, equivalents = count_window(records + [straddle], 3.45, 15.5)
    assert outputs == 12 * 10 + 5  # requests 3..14, and the straddler's last 5
    assert inputs == 12 * 10  # prompts of the requests whose first token arrived inside
    assert finished == 12 + 1  # last tokens at 3.9 .. 14.9, the straddler's at 3.9
    assert equivalents == pytest.approx(125 / 10)  # tokens over the mean per request


def test_bursts_count_all_their_tokens_at_their_arrival():
    r = record(0, 0.0, 1.0, 0.5, 9, burst=3)  # arrivals 1.0 (3), 1.5 (3), 2.0 (3)
    assert tokens_between([r], 1.2, 2.0) == 3 and tokens_between([r], 0.0, 2.01) == 9


def test_failed_requests_are_not_counted():
    bad = record(0, 0.0, 1.0, 0.1, 10)
    bad.status = "error"
    assert count_window([bad], 0.0, 5.0) == (0, 0, 0, 0.0)


def test_halves_rates():
    assert halves_rates(timeline(20), 3.5, 15.5) == pytest.approx((60 / 6, 60 / 6))
    assert halves_rates(timeline(20), 5.0, 5.0) is None


def load_reading(period_s: float = 0.1, interval_ms: int = 100):
    """A 20 s sensor window over a power timeline that ramps, holds and drains."""
    clock, line = FakeClock(), Timeline(100.0)
    sensor = ClockedSensor(clock, line, period_s=period_s, phase_s=0.037)
    t0 = clock.now
    sensor.begin(interval_ms)
    for k in range(200):  # power changes every 0.1 s: 200 W .. 400 W and back
        line.set(t0 + k * 0.1, 200.0 + 200.0 * math.sin(math.pi * k / 200) + 20 * (k % 3))
    clock.now = t0 + 20.0
    return sensor, sensor.end(), line, t0


@pytest.mark.parametrize(("start", "end"), [(2.93, 17.217), (0.01, 19.99), (7.5551, 7.9)])
def test_cropped_energy_is_within_its_budget_of_the_truth(start, end):
    sensor, reading, line, t0 = load_reading()
    part = crop(reading, start, end)
    truth = line.energy(t0 + start, t0 + end)
    budget = energy_budget(part, "gpu0")
    assert budget is not None and budget.random["window_edges"] > 0
    bound = math.sqrt(3) * sum(budget.random.values())
    assert abs(part.energy_j["gpu0"] - truth) <= bound  # the random terms' half-widths, added
    assert part.duration_s == pytest.approx(end - start)
    assert all(0 <= s["t_s"] <= end - start for s in part.samples)
    first = next(s for s in reading.device_samples("gpu0") if s["t_s"] >= start)
    assert part.samples[0]["t_s"] == pytest.approx(first["t_s"] - start)
    assert part.samples[0]["energy_j"] <= first["energy_j"]  # rebased to the part's start


def test_the_whole_window_crops_to_itself_without_edge_error():
    _, reading, _, _ = load_reading()
    whole = crop(reading, 0.0, reading.duration_s)
    assert whole.energy_j["gpu0"] == pytest.approx(reading.energy_j["gpu0"])
    assert whole.edge_uncertainty_j["gpu0"] == 0.0


def test_without_a_counter_the_part_is_integrated_from_power():
    _, reading, line, t0 = load_reading()
    reading.methods["gpu0"] = "nvml_power_integration"
    for s in reading.samples:
        s["energy_j"] = None
    part = crop(reading, 5.0, 10.0)
    assert part.edge_uncertainty_j == {}
    assert part.energy_j["gpu0"] == pytest.approx(line.energy(t0 + 5.0, t0 + 10.0), rel=0.03)


def test_unknown_energy_stays_unknown():
    _, reading, _, _ = load_reading()
    reading.energy_j["gpu0"] = None
    assert crop(reading, 1.0, 2.0).energy_j == {"gpu0": None}
