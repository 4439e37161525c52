"""One exception tree for the project.

Only ``harness.cli`` and the agent's entry point turn these into messages and exit codes.
"""

from __future__ import annotations

from harness.results.reasons import ExitCode, FailureReason


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class UserInputError(HarnessError):
    """The user's input (a study file, an option) is invalid; nothing was started."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class EnvironmentProblem(HarnessError):
    """The machine lacks something the harness needs (engine, image, sensor, disk)."""

    exit_code = ExitCode.ENVIRONMENT


class StorageProblem(EnvironmentProblem):
    """The output folder cannot be written (full disk, read-only or missing folder)."""


class EngineUnavailable(EnvironmentProblem):
    """The container engine stopped answering (it was stopped, restarted or crashed)."""


class RunFailure(HarnessError):
    """One run failed; the study may continue."""

    exit_code = ExitCode.RUN_FAILED

    def __init__(self, message: str, *, reason: FailureReason = FailureReason.AGENT_ERROR) -> None:
        super().__init__(message)
        self.reason = reason


class StudyAborted(HarnessError):
    """The study stopped before its plan was complete (failures, interruption, storage)."""

    exit_code = ExitCode.ABORTED


class StoppedBySignal(KeyboardInterrupt):  # noqa: N818 - a KeyboardInterrupt, named as one
    """The KeyboardInterrupt that the agent's and the command line's signal handlers raise.

    A subclass on purpose. When a plain KeyboardInterrupt passes through code that ``exec``
    runs from a string (dataclass creation during an engine's imports does that), CPython
    marks the process as dying of an unhandled Ctrl+C even where the agent or the command line
    catches it and returns 130, and the process can then exit by SIGINT (-2). CPython marks
    only the exact KeyboardInterrupt type: a subclass is caught the same way everywhere and
    leaves the exit code alone (seen as -2 in about 1 of 30 SIGTERMs while serving).
    """


class Interrupted(HarnessError):
    """The user interrupted the study (Ctrl+C or SIGTERM)."""

    exit_code = ExitCode.INTERRUPTED
