"""A container engine that went away: wait a while for it to answer again, or give up."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.controller.runtimes.base import Runtime
from harness.errors import EngineUnavailable
from harness.results.events import EngineWaiting, Observer

#: seconds between two pings of an engine that does not answer
POLL_S = 2.0


def wait_for_engine(
    runtime: Runtime,
    limit_s: float,
    observer: Observer,
    *,
    sleep: Callable[[float], None],
    stopping: Callable[[], bool] = lambda: False,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Wait up to ``limit_s`` for the runtime's engine to answer; True once it does.

    Each failed ping is reported as EngineWaiting; a stop request (Ctrl+C) ends the wait.
    """
    began = clock()
    slept = 0.0
    while True:
        try:
            runtime.reconnect()
            return True
        except EngineUnavailable as e:
            message = str(e)
        waited = max(clock() - began, slept)  # pings take time too; a fake sleep takes none
        if waited >= limit_s or stopping():
            return False
        observer(EngineWaiting(message=message, waited_s=waited, limit_s=limit_s))
        pause = min(POLL_S, limit_s - waited)
        sleep(pause)
        slept += pause
