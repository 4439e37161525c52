"""Helpers of the serving tests: the fake server in a thread, the tiny model, run specs."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))

from fake_serving.server import FakeServer, Options  # noqa: E402

__all__ = ["PLUGINS", "FakeServer", "Options", "fake_server"]


@contextmanager
def fake_server(options: Options | None = None) -> Iterator[FakeServer]:
    """The fake server on its own event loop in a thread; yields it with its port set."""
    loop = asyncio.new_event_loop()
    server = FakeServer(options or Options())
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
