"""The load generator: streamed completions sent on schedule, every token's arrival timed.

One asyncio event loop in the agent's main thread sends the planned requests (open loop: each
at its send time, at most ``concurrency`` in flight when set; closed loop: ``concurrency``
requests in flight, the next sent when one ends), reads each response's server-sent events as
they arrive, stamps them with ``time.perf_counter()`` (the sensors' clock) and counts each
event's tokens from the server's running usage (``stream_options.continuous_usage_stats``;
one token per event where the server gives none). Meanwhile it polls the engine's running-batch
gauge, and watches the server process: a server that exits under load ends the run
(``server_crashed``). docs/serving.md, section 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.agent import activity
from harness.agent.activity import Activity
from harness.agent.serving.client import HttpError, request, stream_events
from harness.agent.serving.requests import PlannedRequest
from harness.backends.engine import RequestTiming
from harness.config.experiment import Decoding
from harness.errors import RunFailure
from harness.results.reasons import FailureReason

Status = Literal["ok", "error", "timeout", "not_sent"]
COMPLETIONS_PATH = "/v1/completions"
#: how often the server process is checked while the load runs
WATCH_S = 0.2
CANCELLED = "cancelled: the load stopped (the server exited, or the run was interrupted) first"


@dataclass
class RequestRecord:
    """What happened to one request, on the sensors' clock (perf_counter seconds)."""

    index: int
    input_tokens: int
    expected_tokens: int
    due_s: float | None = None
    sent_s: float | None = None
    end_s: float | None = None
    #: (arrival time, tokens) of every event that carried tokens
    arrivals: list[tuple[float, int]] = field(default_factory=list)
    usage_output_tokens: int | None = None
    usage_input_tokens: int | None = None
    status: Status = "not_sent"
    error: str | None = None

    @property
    def output_tokens(self) -> int:
        """Tokens that arrived."""
        return sum(n for _, n in self.arrivals)

    @property
    def first_token_s(self) -> float | None:
        """When the first token arrived."""
        return self.arrivals[0][0] if self.arrivals else None

    def timing(self) -> RequestTiming:
        """The request as latency figures read it: one timestamp per token."""
        assert self.sent_s is not None and self.end_s is not None
        times = [t for t, n in self.arrivals for _ in range(n)]
        return RequestTiming(self.input_tokens, self.output_tokens, self.sent_s, self.end_s, times)

    def on_event(self, data: str, now: float) -> None:
        """Take one server-sent event of this request's stream."""
        if data.strip() == "[DONE]":
            self.end_s = now
            return
        message = json.loads(data)
        if not isinstance(message, dict):
            return
        if message.get("error"):
            raise HttpError(f"the server reported an error mid-stream: {message['error']}")
        raw = message.get("usage")
        usage: dict[str, Any] = raw if isinstance(raw, dict) else {}
        done = usage.get("completion_tokens")
        if message.get("choices"):
            new = done - self.output_tokens if isinstance(done, int) else 1
            if new > 0:
                self.arrivals.append((now, new))
        elif usage:
            self.usage_output_tokens = done if isinstance(done, int) else None
            prompt = usage.get("prompt_tokens")
            self.usage_input_tokens = prompt if isinstance(prompt, int) else None
        self.end_s = now

    def check(self) -> None:
        """Mark the request failed when its token counts are not what was asked."""
        counts = {"arrived": self.output_tokens, "the server counted": self.usage_output_tokens}
        wrong = {k: v for k, v in counts.items() if v is not None and v != self.expected_tokens}
        if wrong:
            self.status, self.error = "error", ", ".join(
                f"{k} {v}" for k, v in wrong.items()) + f" tokens, expected {self.expected_tokens}"
        elif self.usage_input_tokens is not None and self.usage_input_tokens != self.input_tokens:
            self.status = "error"
            self.error = (f"the server counted {self.usage_input_tokens} prompt tokens, "
                          f"{self.input_tokens} were sent")


def completion_payload(model: str, prompt: list[int], tokens: int, decoding: Decoding) -> dict[str, Any]:
    """A streamed completion of exactly ``tokens`` tokens (EOS ignored) on token-id prompts."""
    payload: dict[str, Any] = {
        "model": model, "prompt": prompt, "max_tokens": tokens, "min_tokens": tokens,
        "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "temperature": decoding.temperature,
    }
    if decoding.temperature > 0:
        payload["top_p"] = decoding.top_p
        if decoding.top_k > 0:
            payload["top_k"] = decoding.top_k
    return payload


@dataclass(frozen=True)
class Gauge:
    """A Prometheus gauge to poll: its endpoint and metric name."""

    path: str
    name: str
    interval_s: float


def gauge_value(text: str, name: str) -> float | None:
    """The sum of a gauge's samples over its label sets in Prometheus' text format."""
    values = []
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            with contextlib.suppress(ValueError, IndexError):
                values.append(float(line.rsplit(" ", 1)[1]))
    return sum(values) if values else None


@dataclass
class LoadResult:
    """Every request's record, the load's span, and what was polled meanwhile."""

    records: list[RequestRecord]
    start_s: float
    end_s: float
    gauge: list[tuple[float, float]] = field(default_factory=list)
    gauge_errors: int = 0
    client_cpu_s: float | None = None


class Occupancy:
    """What the server does as its client sees it, published on the activity bus.

    The engine runs in the server's process, where the agent cannot hear it; the load
    generator knows which requests wait for their first token and which stream. Any
    streaming: decode (a continuous-batching engine folds new prompts into its decode steps,
    and a request may wait in the server's queue rather than in prefill); else any waiting:
    prefill; else loaded idle. The only listener today is a simulated GPU (its power follows
    the state); a real sensor reads the hardware.
    """

    def __init__(self) -> None:
        self.waiting = 0
        self.streaming = 0

    def sent(self) -> None:
        """A request went out: it waits for its first token."""
        self.waiting += 1
        self._publish()

    def first_token(self) -> None:
        """A waiting request's first token arrived: it streams now."""
        self.waiting -= 1
        self.streaming += 1
        self._publish()

    def ended(self, streamed: bool) -> None:
        """A request ended (with or without a token)."""
        if streamed:
            self.streaming -= 1
        else:
            self.waiting -= 1
        self._publish()

    def _publish(self) -> None:
        state = (Activity.DECODE if self.streaming else Activity.PREFILL if self.waiting
                 else Activity.LOADED_IDLE)
        activity.publish(state)


class LoadGenerator:
    """Sends planned requests to one server on loopback."""

    def __init__(self, port: int, model: str, decoding: Decoding, *, request_timeout_s: float,
                 gauge: Gauge | None = None, server_exit: Callable[[], int | None] | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host, self.port, self.model, self.decoding = host, port, model, decoding
        self.request_timeout_s = request_timeout_s
        self.gauge = gauge
        self.server_exit = server_exit or (lambda: None)
        #: the latest load's records, kept when ``run`` raises (a crashed server's requests)
        self.result: LoadResult | None = None
        self.occupancy = Occupancy()

    async def _send(self, rec: RequestRecord, planned: PlannedRequest,
                    slots: asyncio.Semaphore | None) -> None:
        async with slots if slots is not None else contextlib.nullcontext():
            rec.sent_s = time.perf_counter()
            payload = completion_payload(self.model, planned.prompt, planned.output_tokens,
                                         self.decoding)

            def on_event(data: str, now: float) -> None:
                waiting = not rec.arrivals
                rec.on_event(data, now)
                if waiting and rec.arrivals:
                    self.occupancy.first_token()

            self.occupancy.sent()
            try:
                await asyncio.wait_for(stream_events(self.host, self.port, COMPLETIONS_PATH,
                                                     payload, on_event), self.request_timeout_s)
            except TimeoutError:
                rec.status, rec.error = "timeout", f"no end within {self.request_timeout_s:g} s"
            except (HttpError, OSError, ValueError, asyncio.IncompleteReadError) as e:
                rec.status, rec.error = "error", f"{type(e).__name__}: {e}"
            except asyncio.CancelledError:
                rec.status, rec.error = "error", CANCELLED
                raise
            else:
                rec.status = "ok"
                rec.check()
            finally:
                self.occupancy.ended(streamed=bool(rec.arrivals))
                if rec.end_s is None:
                    rec.end_s = time.perf_counter()

    async def _open_loop(self, planned: Sequence[PlannedRequest], records: list[RequestRecord],
                         start: float, slots: asyncio.Semaphore | None, deadline: float | None) -> None:
        tasks = []
        for p, rec in zip(planned, records, strict=True):
            due = start + (p.at_s or 0.0)
            if deadline is not None and due > deadline:
                break
            rec.due_s = due
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self._send(rec, p, slots)))
        await asyncio.gather(*tasks)

    async def _closed_loop(self, planned: Sequence[PlannedRequest], records: list[RequestRecord],
                           workers: int, deadline: float | None) -> None:
        queue = list(zip(planned, records, strict=True))
        queue.reverse()

        async def worker() -> None:
            while queue and (deadline is None or time.perf_counter() < deadline):
                p, rec = queue.pop()
                await self._send(rec, p, None)

        await asyncio.gather(*(worker() for _ in range(workers)))

    async def _poll(self, out: LoadResult) -> None:
        gauge = self.gauge
        assert gauge is not None
        while True:
            try:
                got = await request(self.host, self.port, "GET", gauge.path)
                value = gauge_value(got.body.decode("utf-8", "replace"), gauge.name)
                if got.status == 200 and value is not None:
                    out.gauge.append((time.perf_counter(), value))
                else:
                    out.gauge_errors += 1
            except (HttpError, OSError, asyncio.IncompleteReadError):
                out.gauge_errors += 1
            await asyncio.sleep(gauge.interval_s)

    async def _watch(self) -> None:
        while (code := self.server_exit()) is None:
            await asyncio.sleep(WATCH_S)
        raise RunFailure(f"the server exited with status {code} under load",
                         reason=FailureReason.SERVER_CRASHED)

    async def run(self, planned: Sequence[PlannedRequest], *, concurrency: int | None = None,
                  duration_s: float | None = None) -> LoadResult:
        """Send every planned request (open loop unless none has a send time) and wait for all.

        The records stay in ``self.result`` when the load ends early (``server_crashed``).
        """
        records = [RequestRecord(p.index, len(p.prompt), p.output_tokens) for p in planned]
        cpu0 = time.thread_time()
        start = time.perf_counter()
        out = self.result = LoadResult(records, start, start)
        deadline = start + duration_s if duration_s is not None else None
        closed = bool(planned) and all(p.at_s is None for p in planned)
        if closed:
            load = self._closed_loop(planned, records, concurrency or 1, deadline)
        else:
            slots = asyncio.Semaphore(concurrency) if concurrency is not None else None
            load = self._open_loop(planned, records, start, slots, deadline)
        helpers = [asyncio.create_task(self._watch())]
        if self.gauge is not None:
            helpers.append(asyncio.create_task(self._poll(out)))
        main = asyncio.create_task(load)
        try:
            await asyncio.wait([main, helpers[0]], return_when=asyncio.FIRST_COMPLETED)
            if not main.done():
                main.cancel()
                await helpers[0]  # raises the crash
            await main
        finally:
            for task in [main, *helpers]:
                task.cancel()
            await asyncio.gather(main, *helpers, return_exceptions=True)
            out.end_s = max([r.end_s for r in records if r.end_s is not None], default=start)
            out.client_cpu_s = time.thread_time() - cpu0
        return out

    def run_sync(self, planned: Sequence[PlannedRequest], *, concurrency: int | None = None,
                 duration_s: float | None = None) -> LoadResult:
        """``run`` in a new event loop of this thread."""
        return asyncio.run(self.run(planned, concurrency=concurrency, duration_s=duration_s))
