"""One exception tree for the project.

Only ``harness.cli`` and the agent's entry point turn these into messages and exit codes.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    exit_code = 1


class UserInputError(HarnessError):
    """The user's input (a study file, an option) is invalid; nothing was started."""

    exit_code = 2

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

    exit_code = 3


class StorageProblem(EnvironmentProblem):
    """The output folder cannot be written (full disk, read-only or missing folder)."""


class RunFailure(HarnessError):
    """One run failed; the study may continue."""

    exit_code = 4

    def __init__(self, message: str, *, reason: str = "agent_error") -> None:
        super().__init__(message)
        self.reason = reason


class StudyAborted(HarnessError):
    """The study stopped before its plan was complete (failures, interruption, storage)."""

    exit_code = 5


class Interrupted(HarnessError):
    """The user interrupted the study (Ctrl+C or SIGTERM)."""

    exit_code = 130
