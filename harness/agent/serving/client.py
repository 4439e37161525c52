"""A small HTTP/1.1 client on asyncio streams, for the server on loopback: GETs and event streams.

Only what the load generator needs, with no HTTP library (the images hold none that can be
counted on): one connection per request (``Connection: close``), a JSON body, a response body
sized by ``Content-Length``, by chunked transfer coding (RFC 9112, section 7.1) or by the
connection's end, and server-sent events (WHATWG HTML, "Server-sent events": ``data:`` lines,
an event ending at a blank line) handed over as each arrives, stamped with
``time.perf_counter()``, the clock the energy sensors sample on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

#: the longest status or header line accepted
MAX_LINE = 65_536


class HttpError(Exception):
    """The server answered with a status other than 200, or broke the protocol."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass
class Response:
    """A whole response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def _request_bytes(method: str, host: str, port: int, path: str, body: bytes | None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
             "Accept: */*"]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (body or b"")


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and headers (lower-case names) of a response."""
    line = await reader.readline()
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP response: {line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def body_chunks(reader: asyncio.StreamReader, headers: dict[str, str]) -> AsyncIterator[bytes]:
    """The response body as it arrives: chunked, sized or until the connection closes."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError as e:
                raise HttpError(f"bad chunk size line {size_line[:40]!r}") from e
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)  # the chunk's CRLF
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 65_536))
            if not data:
                raise HttpError("the connection closed before the body's end")
            left -= len(data)
            yield data
    else:
        while data := await reader.read(65_536):
            yield data


@dataclass
class Connection:
    """One request's connection; closed by ``close``."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def close(self) -> None:
        """Close the connection, ignoring a peer that is already gone."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def send(host: str, port: int, method: str, path: str,
               body: bytes | None = None) -> tuple[Connection, int, dict[str, str]]:
    """Open a connection, send one request, read the status and headers."""
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
    conn = Connection(reader, writer)
    try:
        writer.write(_request_bytes(method, host, port, path, body))
        await writer.drain()
        status, headers = await _head(reader)
    except BaseException:
        await conn.close()
        raise
    return conn, status, headers


async def request(host: str, port: int, method: str, path: str,
                  payload: Any = None) -> Response:
    """One request with an optional JSON body; the whole response."""
    body = json.dumps(payload).encode() if payload is not None else None
    conn, status, headers = await send(host, port, method, path, body)
    try:
        data = b"".join([part async for part in body_chunks(conn.reader, headers)])
    finally:
        await conn.close()
    return Response(status, headers, data)


class EventParser:
    """Server-sent events from bytes as they arrive: each event's data, when it ends."""

    def __init__(self, on_event: Callable[[str, float], None]) -> None:
        self._on_event = on_event
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes, now: float) -> None:
        """Take received bytes; call ``on_event(data, now)`` for every event they complete."""
        self._buffer += chunk
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return
            line = self._buffer[:cut].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[cut + 1:]
            if not line:
                if self._data:
                    self._on_event("\n".join(self._data), now)
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # comments (":"), "event:", "id:" and "retry:" lines carry nothing a completion needs


async def stream_events(host: str, port: int, path: str, payload: Any,
                        on_event: Callable[[str, float], None]) -> None:
    """POST ``payload`` and hand every server-sent event of the response to ``on_event``.

    Raises HttpError for a status other than 200 (with the response's body).
    """
    conn, status, headers = await send(host, port, "POST", path, json.dumps(payload).encode())
    try:
        if status != 200:
            body = b"".join([part async for part in body_chunks(conn.reader, headers)])
            raise HttpError(f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}", status, body)
        parser = EventParser(on_event)
        async for part in body_chunks(conn.reader, headers):
            parser.feed(part, time.perf_counter())
    finally:
        await conn.close()
