"""The steady part of a serving load, and what is counted inside it (docs/serving.md, section 4).

The rule is ML.ENERGY's (the ML.ENERGY benchmark, ``RequestTracker`` in
``mlenergy/benchmark/llm/benchmark.py``, commit c1d6557; Chung et al., "The ML.ENERGY
Benchmark", NeurIPS 2025 Datasets and Benchmarks): with ``B`` the most requests the engine runs
at once and ``N`` requests sent, the window opens when ``B`` requests have received their first
token (the first batch is full and prefilled) and closes when ``N - B - 1`` requests have
finished (more than ``B`` are then left, so the batch is still full; the ``- 1`` ends the window
one request early so that no drain enters it). A request has finished when its stream ended,
whatever its status, as ML.ENERGY counts it. ``B`` is the engine's batch limit
(``BackendOptions.max_running_requests``), or ``concurrency`` when that is smaller. With
``N < B + 2``, or when the closing finish comes no later than the opening first token, there is
no such window: the figures then cover the whole load and the ``no_steady_state`` warning marks
them. Inside a window, throughput must be stable too: the output-token rate of its two halves
may differ by at most ``measurement.steady_tolerance`` (``throughput_not_steady`` otherwise).

Tokens are counted by arrival time over ``[open, close)``: an output token counts when it
arrives inside the window, a prompt when its request's first token does, a request as finished
when its stream ends inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.agent.serving.loadgen import RequestRecord
from harness.agent.window import Window

RULE = ("ML.ENERGY: from when B requests have their first token to when N-B-1 requests have "
        "finished, B = the engine's batch limit, N = requests sent")


@dataclass(frozen=True)
class SteadySpan:
    """Where the steady window lies on the sensors' clock, or why there is none."""

    start_s: float
    end_s: float
    found: bool
    batch: int | None
    reason: str | None = None


def steady_span(records: Sequence[RequestRecord], batch: int | None, load: tuple[float, float]) -> SteadySpan:
    """The window of ML.ENERGY's rule over first tokens and finishes; the whole load if none."""
    sent = [r for r in records if r.status != "not_sent"]
    firsts = sorted(t for r in sent if (t := r.first_token_s) is not None)
    ends = sorted(t for r in sent if (t := r.end_s) is not None)
    if batch is None:
        return SteadySpan(*load, False, None, "the engine's options set no batch limit")
    closing = len(sent) - batch - 1
    if closing < 1 or len(firsts) < batch or len(ends) < closing:
        return SteadySpan(*load, False, batch,
                          f"{len(sent)} requests sent, {len(firsts)} with a first token, "
                          f"{len(ends)} finished: the rule needs at least B + 2 = {batch + 2} sent, "
                          "B with a first token and N - B - 1 finished (B, the most requests "
                          "running at once)")
    start, end = firsts[batch - 1], ends[closing - 1]
    if end <= start:
        return SteadySpan(*load, False, batch,
                          f"{closing} requests (N - B - 1) had finished by the time {batch} (B) had a "
                          "first token: the batch never ran full")
    return SteadySpan(start, end, True, batch)


def tokens_between(records: Sequence[RequestRecord], start_s: float, end_s: float) -> int:
    """Output tokens that arrived in [start_s, end_s)."""
    return sum(n for r in records for t, n in r.arrivals if start_s <= t < end_s)


def halves_rates(
    records: Sequence[RequestRecord], start_s: float, end_s: float
) -> tuple[float, float] | None:
    """Output tokens per second in the window's first and second half (None: no window)."""
    if end_s <= start_s:
        return None
    mid = (start_s + end_s) / 2
    half = (end_s - start_s) / 2
    return tokens_between(records, start_s, mid) / half, tokens_between(records, mid, end_s) / half


@dataclass
class ServingWindow(Window):
    """The steady window as the offline figures read a window: tokens counted by arrival."""

    counted_input_tokens: int = 0
    counted_output_tokens: int = 0
    #: output tokens counted over the mean output tokens of a request (ML.ENERGY's energy per
    #: response: energy per token x mean response length)
    request_equivalents: float = 0.0
    #: requests whose last token arrived in the window
    finished: int = 0

    @property
    def input_tokens(self) -> int:
        """Prompt tokens of the requests whose first token arrived in the window."""
        return self.counted_input_tokens

    @property
    def output_tokens(self) -> int:
        """Output tokens that arrived in the window."""
        return self.counted_output_tokens

    @property
    def request_count(self) -> float:
        """Requests the window's tokens amount to."""
        return self.request_equivalents


def count_window(
    records: Sequence[RequestRecord], start_s: float, end_s: float
) -> tuple[int, int, int, float]:
    """(input tokens, output tokens, requests finished, request equivalents) inside the window."""
    ok = [r for r in records if r.status == "ok"]
    outputs = tokens_between(ok, start_s, end_s)
    inputs = sum(r.input_tokens for r in ok
                 if (t := r.first_token_s) is not None and start_s <= t < end_s)
    finished = sum(1 for r in ok if r.end_s is not None and start_s <= r.end_s < end_s)
    mean_out = sum(r.output_tokens for r in ok) / len(ok) if ok else 0.0
    return inputs, outputs, finished, outputs / mean_out if mean_out else 0.0
