"""Progress events a study emits, and the observer protocol the CLI (or a test) implements.

Events are typed objects, not strings: a misspelled event or field fails type checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from harness.config.experiment import Experiment
    from harness.config.sweep import PlannedRun
    from harness.results.schema import ExperimentResult, RunRecord


@dataclass(frozen=True)
class StudyStarted:
    """The run loop starts: ``total`` planned runs, ``todo`` of them still to run."""

    total: int
    todo: int


@dataclass(frozen=True)
class RunStarted:
    """A run starts (its container or process is about to be created)."""

    run: PlannedRun
    experiment: Experiment
    gpus: tuple[str, ...] = ()
    #: where it runs, for people: ``gpus 0,1``, ``cpus 0-3``, or empty
    placement: str = ""


@dataclass(frozen=True)
class RunFinished:
    """A run ended: done, failed or interrupted (``record`` says which and why)."""

    run: PlannedRun
    record: RunRecord
    result: ExperimentResult | None


@dataclass(frozen=True)
class Pause:
    """The controller waits between runs (gap_s or cycle_gap_s)."""

    seconds: float


@dataclass(frozen=True)
class StudyAborted:
    """The study stopped before its plan was complete; ``message`` says why and what next."""

    message: str


@dataclass(frozen=True)
class StudyInterrupted:
    """Ctrl+C or SIGTERM stopped the study; ``message`` says what is kept and how to go on."""

    message: str


@dataclass(frozen=True)
class SignalReceived:
    """Ctrl+C or SIGTERM arrived: the first stops gracefully, the second forces."""

    signal: str
    force: bool


@dataclass(frozen=True)
class OrphanFound:
    """A container of this study whose controller is gone; it is being stopped and removed."""

    container: str
    run_id: str
    controller_pid: int | None
    study_dir: str | None = None


@dataclass(frozen=True)
class RunRecovered:
    """A run a lost controller left was settled (kept as done, or marked interrupted)."""

    run_id: str
    status: str
    message: str | None


@dataclass(frozen=True)
class EngineWaiting:
    """The container engine stopped answering; the controller waits for it to come back."""

    message: str
    waited_s: float
    limit_s: float


@dataclass(frozen=True)
class Note:
    """Something the user should read (a warning about the plan, a recovery step)."""

    message: str


Event = (
    StudyStarted | RunStarted | RunFinished | Pause | StudyAborted | StudyInterrupted
    | SignalReceived | OrphanFound | RunRecovered | EngineWaiting | Note
)


class Observer(Protocol):
    """Receives a study's progress events (the CLI renders them; tests collect them)."""

    def __call__(self, event: Event) -> None:
        """Handle one event; must not raise."""


def ignore(event: Event) -> None:
    """An observer that drops every event."""
