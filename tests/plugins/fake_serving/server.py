"""A fake OpenAI-compatible completions server: a scheduled batch on asyncio, for serving tests.

It runs the way a continuous-batching engine does, without a model: every ``step_s`` each of
at most ``max_running`` admitted requests gets one token (several per event with ``burst``),
streamed as server-sent events in chunked transfer coding, with vLLM's running usage
(``continuous_usage_stats``), a final usage event and ``[DONE]``. It answers /health (after
``ready_after_s``), /version and /metrics (``vllm:num_requests_running``-style gauge named
``fake:num_requests_running``). Faults for tests: ``never_ready``, ``crash_after`` requests
(the process exits), ``error_every`` (every Nth request answers 500).

Run in a thread or task (``FakeServer``) or as a process::

    python -m fake_serving.server --port PORT [--step-s 0.01] [--max-running 4] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import dataclass, field

GAUGE = "fake:num_requests_running"


@dataclass
class Options:
    step_s: float = 0.005
    max_running: int = 4
    burst: int = 1
    ready_after_s: float = 0.0
    never_ready: bool = False
    crash_after: int | None = None
    error_every: int | None = None
    usage: bool = True


@dataclass
class _Request:
    tokens: int
    prompt_tokens: int
    queue: asyncio.Queue[int | None] = field(default_factory=asyncio.Queue)
    made: int = 0


class FakeServer:
    """The server's state and its handlers."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.started = time.perf_counter()
        self.waiting: list[_Request] = []
        self.running: list[_Request] = []
        self.received = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        asyncio.get_running_loop().create_task(self._engine())
        return self.port

    async def _engine(self) -> None:
        while True:
            await asyncio.sleep(self.options.step_s)
            while self.waiting and len(self.running) < self.options.max_running:
                self.running.append(self.waiting.pop(0))
            for req in list(self.running):
                req.made += 1
                done = req.made >= req.tokens
                if done or req.made % self.options.burst == 0:
                    await req.queue.put(req.made)
                if done:
                    await req.queue.put(None)
                    self.running.remove(req)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            await self._route(method, path, body, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        ready = not self.options.never_ready and \
            time.perf_counter() - self.started >= self.options.ready_after_s
        if path == "/health":
            await self._plain(writer, 200 if ready else 503, b"")
        elif path == "/version":
            await self._plain(writer, 200, b'{"version": "fake-1"}')
        elif path == "/metrics":
            text = f"# TYPE {GAUGE} gauge\n{GAUGE}{{engine=\"0\"}} {float(len(self.running))}\n"
            await self._plain(writer, 200, text.encode())
        elif path == "/v1/completions" and method == "POST":
            await self._complete(json.loads(body), writer)
        else:
            await self._plain(writer, 404, b'{"error": "not found"}')

    @staticmethod
    async def _plain(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    @staticmethod
    async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    async def _complete(self, payload: dict, writer: asyncio.StreamWriter) -> None:
        self.received += 1
        o = self.options
        if o.crash_after is not None and self.received > o.crash_after:
            os._exit(3)
        if o.error_every and self.received % o.error_every == 0:
            await self._plain(writer, 500, b'{"error": "injected"}')
            return
        req = _Request(int(payload["max_tokens"]), len(payload["prompt"]))
        self.waiting.append(req)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        sent = 0
        while (made := await req.queue.get()) is not None:
            event = {"choices": [{"index": 0, "text": "x" * (made - sent)}]}
            if o.usage:
                event["usage"] = {"prompt_tokens": req.prompt_tokens, "completion_tokens": made}
            sent = made
            await self._chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
        final = {"choices": [], "usage": {"prompt_tokens": req.prompt_tokens,
                                          "completion_tokens": req.tokens}}
        await self._chunk(writer, f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
        await self._chunk(writer, b"")


async def serve_forever(options: Options, port: int) -> None:
    server = FakeServer(options)
    await server.start(port)
    with open("server.pid", "w", encoding="utf-8") as fh:  # in its folder: tests check it ends
        fh.write(str(os.getpid()))
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-s", type=float, default=0.005)
    parser.add_argument("--max-running", type=int, default=4)
    parser.add_argument("--burst", type=int, default=1)
    parser.add_argument("--ready-after-s", type=float, default=0.0)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--crash-after", type=int)
    parser.add_argument("--error-every", type=int)
    args = parser.parse_args()
    options = Options(args.step_s, args.max_running, args.burst, args.ready_after_s,
                      args.never_ready, args.crash_after, args.error_every)
    asyncio.run(serve_forever(options, args.port))


if __name__ == "__main__":
    main()
