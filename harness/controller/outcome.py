"""What a finished run means: a valid result, or a failure reason and a message.

result.json is written last and atomically by the agent, so a valid one means the run
completed, whatever happened afterwards; one that fails validation is never taken as done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from harness.controller.runtimes.base import RunOutcome
from harness.results.headline import headline
from harness.results.io import atomic_write_json, atomic_write_text, read_model
from harness.results.reasons import ExitCode, FailureReason
from harness.results.schema import ExperimentResult, RunError, RunRecord
from harness.secrets import Scrubber

#: the agent's exit code when it cannot write its output folder (harness.agent)
EXIT_STORAGE = ExitCode.STORAGE


class Classified(NamedTuple):
    """A run's verdict: its result when done (reason None), else why not."""

    result: ExperimentResult | None
    reason: FailureReason | None
    message: str


def read_result(run_dir: Path) -> tuple[ExperimentResult | None, str]:
    """The run folder's result if it is complete and valid, else why not ('' if absent)."""
    path = run_dir / "result.json"
    if not path.is_file():
        return None, ""
    try:
        result = read_model(path, ExperimentResult)
    except (ValueError, OSError) as e:
        return None, str(e)
    if result.run.run_id != run_dir.name:
        return None, f"{path}: belongs to run {result.run.run_id!r}, not {run_dir.name!r}"
    return result, ""


def agent_error(run_dir: Path) -> RunError | None:
    """The run folder's error.json, if it holds a valid one."""
    try:
        return read_model(run_dir / "error.json", RunError)
    except (ValueError, OSError):
        return None


def classify(run_dir: Path, outcome: RunOutcome, *, interrupted: bool = False) -> Classified:
    """A valid result, or the failure reason and message, from the run folder and outcome."""
    result, invalid = read_result(run_dir)
    if result is not None:
        return Classified(result, None, "")
    if outcome.reason == FailureReason.STORAGE_ERROR or outcome.exit_code == EXIT_STORAGE:
        err = agent_error(run_dir)
        return Classified(None, FailureReason.STORAGE_ERROR, outcome.error or (
            err.message if err else "the agent could not write its output folder"))
    if invalid:
        return Classified(None, FailureReason.RESULT_INVALID, invalid)
    return Classified(None, *_failure(run_dir, outcome, interrupted))


def _failure(run_dir: Path, outcome: RunOutcome, interrupted: bool) -> tuple[FailureReason, str]:
    """Why a run without a result failed, most specific cause first."""
    if outcome.timed_out:
        return FailureReason.TIMEOUT, (f"the run did not finish within execution.timeout_s; "
                                       f"stopped after {outcome.duration_s:.0f} s")
    if interrupted:
        return FailureReason.INTERRUPTED, outcome.error or "stopped by Ctrl+C or SIGTERM"
    if outcome.oom_killed:
        return (FailureReason.OUT_OF_MEMORY,
                "the container was killed for exceeding its memory limit")
    if outcome.reason:
        return outcome.reason, outcome.error or outcome.reason
    err = agent_error(run_dir)
    if err is not None:
        return err.reason, err.message
    if outcome.killed:
        return FailureReason.KILLED, (f"the agent was killed by SIGKILL from outside the harness "
                                      f"(exit code {outcome.exit_code}; docker kill, the kernel, ...)")
    if outcome.exit_code == 0:
        return FailureReason.RESULT_MISSING, "the agent exited 0 but wrote no result.json"
    return FailureReason.AGENT_EXIT, f"the agent exited with code {outcome.exit_code}"


def write_error(run_dir: Path, run_id: str, reason: FailureReason, message: str,
                scrubber: Scrubber) -> None:
    """error.json with the controller's reason; the agent's own is kept inside its message."""
    agent = agent_error(run_dir)
    if agent is not None and agent.reason == reason:
        return
    if agent is not None:
        message = f"{message} (the agent said: {agent.reason}: {agent.message})"
    atomic_write_json(run_dir / "error.json", RunError(
        run_id=run_id, reason=reason, message=scrubber.text(message) or "",
        where="controller", traceback=agent.traceback if agent is not None else None,
    ))


def keep_log(run_dir: Path, text: str) -> None:
    """Write container.log unless the run folder has one (or is gone)."""
    if run_dir.is_dir() and not (run_dir / "container.log").exists():
        atomic_write_text(run_dir / "container.log", text)


def mark_done(record: RunRecord, result: ExperimentResult, finished_at: str) -> None:
    """Record a run as done from its result."""
    record.status = "done"
    record.reason = None
    record.agent_s = result.timings.total_s
    record.headline = headline(result)
    record.finished_at = finished_at


def written_at(path: Path) -> str:
    """A file's modification time, as the manifest writes times."""
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
