"""Serving figures from the requests' records: the load as sent, the window's counts, goodput.

Definitions in docs/serving.md, section 5. Latency statistics are over every request that
completed (as the serving benchmarks docs/serving.md cites report them); throughput, energy and the
running batch are over the steady window, tokens counted by arrival.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.agent.serving.loadgen import LoadResult, RequestRecord
from harness.agent.serving.steady import SteadySpan, halves_rates
from harness.config.experiment import Experiment
from harness.config.serving import Slo
from harness.results.energy import Energy, Uncertainty, UncertaintyTerm
from harness.results.serving import ServingResult


def send_figures(exp: Experiment, load: LoadResult) -> dict[str, float | None]:
    """The achieved send rate against the target, and how late requests were sent."""
    records = load.records
    sent = sorted(r.sent_s for r in records if r.sent_s is not None)
    lags = [r.sent_s - r.due_s for r in records if r.sent_s is not None and r.due_s is not None]
    rate = exp.serving.request_rate
    achieved = (len(sent) / (sent[-1] - load.start_s)
                if rate is not None and sent and sent[-1] > load.start_s else None)
    return {
        "target_request_rate": rate,
        "achieved_request_rate": achieved,
        "send_lag_p99_s": float(np.percentile(lags, 99)) if lags else None,
        "send_lag_max_s": max(lags) if lags else None,
    }


def slo_met(record: RequestRecord, slo: Slo) -> bool:
    """Whether a completed request met every objective that is set."""
    timing = record.timing()
    if slo.ttft_s is not None and (timing.ttft_s is None or timing.ttft_s > slo.ttft_s):
        return False
    return not (slo.tpot_s is not None and timing.tpot_s is not None and timing.tpot_s > slo.tpot_s)


def in_flight_mean(records: Sequence[RequestRecord], start_s: float, end_s: float) -> float | None:
    """Requests in flight on the client's side, averaged over the window."""
    if end_s <= start_s:
        return None
    busy = sum(max(0.0, min(r.end_s, end_s) - max(r.sent_s, start_s))
               for r in records if r.sent_s is not None and r.end_s is not None)
    return busy / (end_s - start_s)


def gauge_mean(load: LoadResult, start_s: float, end_s: float) -> float | None:
    """The engine's running-batch gauge averaged over its polls inside the window."""
    values = [v for t, v in load.gauge if start_s <= t <= end_s]
    return sum(values) / len(values) if values else None


def per_user_rate(records: Sequence[RequestRecord]) -> float | None:
    """Mean over completed requests of 1 / TPOT: the speed a user sees tokens stream at."""
    rates = [1.0 / tpot for r in records if (tpot := r.timing().tpot_s)]
    return sum(rates) / len(rates) if rates else None


def scaled(u: Uncertainty, factor: float) -> Uncertainty:
    """The budget of ``factor`` x a figure."""
    k = abs(factor)
    return u.model_copy(update={
        "expanded": u.expanded * k, "expanded_random": u.expanded_random * k,
        "terms": [UncertaintyTerm(name=t.name, standard=t.standard * k, systematic=t.systematic)
                  for t in u.terms]})


def goodput(exp: Experiment, ok: Sequence[RequestRecord], finished_per_s: float | None,
            energy: Energy) -> dict[str, object]:
    """SLO attainment, goodput and energy per request that met the objectives."""
    slo = exp.slo
    if not slo.given or not ok:
        return {}
    share = sum(slo_met(r, slo) for r in ok) / len(ok)
    out: dict[str, object] = {
        "slo_attainment": share,
        "goodput_requests_per_s": finished_per_s * share if finished_per_s is not None else None,
    }
    per_request = energy.j_per_request
    if per_request is not None and share > 0:
        out["j_per_good_request"] = per_request / share
        u = energy.uncertainty.get("j_per_request")
        if u is not None:
            out["uncertainty"] = {"j_per_good_request": scaled(u, 1.0 / share)}
    return out


def serving_summary(exp: Experiment, load: LoadResult, span: SteadySpan, energy: Energy,
                    finished: int, equivalents: float, server_argv: Sequence[str],
                    requests_sha256: str) -> ServingResult:
    """The serving block of result.json."""
    records = load.records
    ok = [r for r in records if r.status == "ok"]
    window_s = span.end_s - span.start_s
    rates = halves_rates(ok, span.start_s, span.end_s)
    difference = (abs(rates[1] - rates[0]) / rates[0]) if rates and rates[0] > 0 else None
    extra = goodput(exp, ok, finished / window_s if window_s > 0 else None, energy)
    return ServingResult(
        requests_planned=len(records),
        requests_ok=len(ok),
        requests_failed=sum(r.status in ("error", "timeout") for r in records),
        requests_not_sent=sum(r.status == "not_sent" for r in records),
        concurrency=exp.serving.concurrency,
        load_s=load.end_s - load.start_s,
        window_found=span.found,
        window_reason=span.reason,
        window_start_s=span.start_s - load.start_s,
        window_end_s=span.end_s - load.start_s,
        max_running_requests=span.batch,
        requests_finished_in_window=finished,
        request_equivalents=equivalents,
        throughput_first_half=rates[0] if rates else None,
        throughput_second_half=rates[1] if rates else None,
        throughput_difference=difference,
        output_tokens_per_s_per_user=per_user_rate(ok),
        mean_in_flight_requests=in_flight_mean(ok, span.start_s, span.end_s),
        slo_ttft_s=exp.slo.ttft_s,
        slo_tpot_s=exp.slo.tpot_s,
        client_cpu_s=load.client_cpu_s,
        server_argv=list(server_argv),
        requests_sha256=requests_sha256,
        **send_figures(exp, load),
        **extra,  # type: ignore[arg-type]
    )


def request_lines(load: LoadResult, span: SteadySpan | None, slo: Slo) -> list[dict[str, object]]:
    """requests.jsonl: every request with its times (seconds from the load's start) and status.

    ``span`` None: the load ended before a window could be found; no prompt is in one.
    """
    t0 = load.start_s

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t0

    lines = []
    for r in load.records:
        line: dict[str, object] = {
            "index": r.index, "status": r.status, "error": r.error,
            "input_tokens": r.input_tokens, "output_tokens": r.output_tokens,
            "expected_output_tokens": r.expected_tokens, "due_s": rel(r.due_s),
            "sent_s": rel(r.sent_s), "first_token_s": rel(r.first_token_s), "end_s": rel(r.end_s),
            "arrivals": [[round(t - t0, 6), n] for t, n in r.arrivals],
        }
        if r.status == "ok":
            timing = r.timing()
            line.update(ttft_s=timing.ttft_s, tpot_s=timing.tpot_s, e2e_s=timing.e2e_s,
                        itl_s=timing.itl_s, slo_met=slo_met(r, slo) if slo.given else None)
        first = r.first_token_s
        line["first_token_in_window"] = (span is not None and first is not None
                                         and span.start_s <= first < span.end_s)
        lines.append(line)
    return lines
