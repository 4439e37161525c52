"""The asyncio HTTP/SSE client against the fake server and against hand-written responses."""

import asyncio

import pytest
from _serving import Options, fake_server

from harness.agent.serving.client import EventParser, HttpError, request, stream_events


def test_events_are_parsed_however_the_bytes_are_split():
    stream = (b"data: {\"a\": 1}\r\n\r\n: a comment\n\ndata: x\ndata: y\n\nevent: e\n"
              b"data:[DONE]\n\n")
    for size in (1, 2, 3, 7, len(stream)):
        got: list[tuple[str, float]] = []
        parser = EventParser(lambda data, now, got=got: got.append((data, now)))
        for i in range(0, len(stream), size):
            parser.feed(stream[i:i + size], float(i))
        assert [d for d, _ in got] == ['{"a": 1}', "x\ny", "[DONE]"]
        times = [t for _, t in got]
        assert times == sorted(times)  # each event is stamped when its last byte arrived


async def _answer(raw: bytes) -> tuple[int, asyncio.base_events.Server]:
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1], server


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"ok\": true}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"ok\"\r\n"
    b"6\r\n: true\r\n1\r\n}\r\n0\r\nTrailer: x\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\n{\"ok\": true}",
])
def test_bodies_sized_chunked_or_until_close(raw):
    async def go():
        port, server = await _answer(raw)
        async with server:
            return await request("127.0.0.1", port, "GET", "/")

    got = asyncio.run(go())
    assert got.status == 200 and got.json() == {"ok": True}


def test_a_status_other_than_200_is_an_error_with_the_body():
    async def go():
        port, server = await _answer(b"HTTP/1.1 400 Bad\r\nContent-Length: 9\r\n\r\nbad input")
        async with server:
            await stream_events("127.0.0.1", port, "/v1/completions", {}, lambda d, t: None)

    with pytest.raises(HttpError, match="HTTP 400: bad input") as e:
        asyncio.run(go())
    assert e.value.status == 400


def test_a_broken_response_is_an_error():
    async def go():
        port, server = await _answer(b"SMTP ready\r\n\r\n")
        async with server:
            await request("127.0.0.1", port, "GET", "/")

    with pytest.raises(HttpError, match="not an HTTP response"):
        asyncio.run(go())


def test_a_stream_from_the_fake_server_arrives_token_by_token():
    with fake_server(Options(step_s=0.01, max_running=2)) as server:
        events = []
        payload = {"model": "m", "prompt": [1, 2, 3], "max_tokens": 5, "stream": True}
        asyncio.run(stream_events("127.0.0.1", server.port, "/v1/completions", payload,
                                  lambda data, now: events.append((data, now))))
        health = asyncio.run(request("127.0.0.1", server.port, "GET", "/health"))
    assert health.status == 200
    assert events[-1][0] == "[DONE]" and len(events) == 5 + 2  # 5 tokens, usage, [DONE]
    gaps = [b - a for (_, a), (_, b) in zip(events[:5], events[1:5], strict=False)]
    assert all(g > 0.005 for g in gaps)  # one engine step apart, not read all at once
