"""The slots runs run in: up to N at once, each run in its own thread (with one slot, inline).

The run loop takes a free slot, starts a run in it, and collects runs as they end, in the
order they end. A slot remembers its last run (gaps apply between runs on the same slot) and
the CPU set its runs are pinned to, if any.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.config.sweep import PlannedRun
from harness.results.schema import RunRecord

#: how often the loop, waiting for a run to end, lets signal handlers run
WAKE_S = 0.5


@dataclass
class Slot:
    """One place a run can be in flight."""

    index: int
    #: the CPU set its CPU runs are pinned to (None: not pinned)
    cpus: tuple[int, ...] | None = None
    #: the run it ran last (None: none yet)
    previous: PlannedRun | None = None


@dataclass(frozen=True)
class Ended:
    """A run that ended: its record, or what it raised."""

    planned: PlannedRun
    record: RunRecord | None
    error: BaseException | None = None


class InFlight:
    """Runs in flight in a fixed number of slots; only the loop's thread calls its methods."""

    def __init__(self, cpus: Sequence[tuple[int, ...] | None]) -> None:
        self.size = len(cpus)
        self._free: deque[Slot] = deque(Slot(i, c) for i, c in enumerate(cpus))
        self._done: queue.SimpleQueue[tuple[Slot, Ended]] = queue.SimpleQueue()
        self._busy = 0

    def has_free(self) -> bool:
        """Whether a slot is free."""
        return bool(self._free)

    def take(self) -> Slot:
        """A free slot (the one free longest)."""
        return self._free.popleft()

    def give_back(self, slot: Slot) -> None:
        """Return a slot that was taken but not used."""
        self._free.appendleft(slot)

    def busy(self) -> bool:
        """Whether a run is in flight."""
        return self._busy > 0

    def start(self, slot: Slot, planned: PlannedRun, body: Callable[[], RunRecord]) -> None:
        """Run ``body`` in ``slot``: in this thread with one slot, else in a thread of its own."""
        slot.previous = planned
        self._busy += 1
        if self.size == 1:  # exactly the one-after-another loop: what it raises, raises here
            self._done.put((slot, Ended(planned, body())))
            return
        threading.Thread(target=self._guarded, args=(slot, planned, body), daemon=True,
                         name=f"harness-run-{planned.run_id}").start()

    def _guarded(self, slot: Slot, planned: PlannedRun, body: Callable[[], RunRecord]) -> None:
        try:
            ended = Ended(planned, body())
        except BaseException as e:  # noqa: BLE001 - handed to the loop's thread, which re-raises
            ended = Ended(planned, None, e)
        self._done.put((slot, ended))

    def next_done(self) -> Ended:
        """Wait for the next run to end (in the order they end); its slot is free again."""
        while True:
            try:
                slot, ended = self._done.get(timeout=WAKE_S)
                break
            except queue.Empty:
                continue
        self._busy -= 1
        self._free.append(slot)
        return ended
