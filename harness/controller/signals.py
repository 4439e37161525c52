"""Ctrl+C and SIGTERM while a study runs: the first stops gracefully, the second forces."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from harness.controller.runtimes.base import Runtime
from harness.errors import StoppedBySignal
from harness.results.events import Observer, SignalReceived


class SignalWatch:
    """Turns SIGINT/SIGTERM into a stop request and stop/kill calls on the runtime.

    The handler only queues the signal (safe in a signal handler); a watcher thread acts on it.
    A third signal gives up waiting and unwinds at once (KeyboardInterrupt).
    """

    def __init__(self, runtime: Runtime, observer: Observer, stop: threading.Event) -> None:
        self.runtime = runtime
        self.observer = observer
        self.stop = stop
        #: the name of the first signal received, if any
        self.first: str | None = None
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._count = 0

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals for the duration (in the main thread only); restore them after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        watcher = threading.Thread(target=self._watch, name="harness-signals", daemon=True)
        watcher.start()
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for signum in previous:
            signal.signal(signum, self._on_signal)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._queue.put(None)
            watcher.join(timeout=5)

    def _on_signal(self, signum: int, frame: object) -> None:
        self._count += 1
        if self._count > 2:  # a third: give up waiting, unwind at once
            raise StoppedBySignal(f"{signal.Signals(signum).name} a third time")
        self._queue.put(signum)  # SimpleQueue.put is safe in a signal handler

    def _watch(self) -> None:
        seen = 0
        while True:
            signum = self._queue.get()
            if signum is None:
                return
            seen += 1
            name = signal.Signals(signum).name
            force = seen > 1
            if not force:
                self.first = name
                self.stop.set()
            self.observer(SignalReceived(signal=name, force=force))
            action = self.runtime.kill if force else self.runtime.stop
            threading.Thread(target=action, name=f"harness-{name}", daemon=True).start()
