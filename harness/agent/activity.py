"""What the engine is doing, published as it happens: no context, loaded idle, prefill, decode.

Engines and the protocol publish state changes; subscribers (a simulated GPU, the sensors'
phase marks) receive ``(state, time.perf_counter())`` (CLOCK_MONOTONIC on Linux, one clock for
every process). Publishing costs one list walk and never raises into the engine. One bus per
process, like logging.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class Activity(StrEnum):
    """The states a device goes through while the agent runs."""

    NO_CONTEXT = "no_context"
    LOADED_IDLE = "loaded_idle"
    PREFILL = "prefill"
    DECODE = "decode"


Listener = Callable[[Activity, float], None]

_lock = threading.Lock()
_listeners: list[Listener] = []
_state = Activity.NO_CONTEXT


def subscribe(listener: Listener) -> None:
    """Receive every state change from now on (and the current state at once)."""
    with _lock:
        _listeners.append(listener)
        state = _state
    listener(state, time.perf_counter())


def unsubscribe(listener: Listener) -> None:
    """Stop receiving state changes."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def publish(state: Activity) -> None:
    """Tell subscribers the device entered ``state`` now (repeats of the same state are dropped)."""
    global _state
    with _lock:
        if state == _state:
            return
        _state = state
        listeners = list(_listeners)
    now = time.perf_counter()
    for listener in listeners:
        try:
            listener(state, now)
        except Exception:  # noqa: BLE001 - a subscriber must never break the engine
            pass


def current() -> Activity:
    """The state last published."""
    return _state
