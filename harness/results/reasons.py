"""Failure reasons and exit codes: defined once, used by the agent, controller, CLI and report.

A run that fails carries one ``FailureReason`` in error.json and the manifest. The values are
the strings written to those files, so results from earlier versions still read.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class FailureReason(StrEnum):
    """Why a run did not produce a result; docs/faults.md explains each."""

    # decided by the controller from what the runtime saw
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    KILLED = "killed"
    INTERRUPTED = "interrupted"
    CONTROLLER_LOST = "controller_lost"
    IMAGE_MISSING = "image_missing"
    MODEL_NOT_FOUND = "model_not_found"
    DATASET_NOT_FOUND = "dataset_not_found"
    CONTAINER_CREATE_FAILED = "container_create_failed"
    DOCKER_ERROR = "docker_error"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    UNSAFE_CONTAINER = "unsafe_container"
    RESULT_INVALID = "result_invalid"
    RESULT_MISSING = "result_missing"
    RESULT_LOST = "result_lost"
    AGENT_EXIT = "agent_exit"
    STORAGE_ERROR = "storage_error"
    PLACEMENT_FAILED = "placement_failed"
    GPU_SETTINGS_FAILED = "gpu_settings_failed"
    # Slurm's terminal job states
    SLURM_TIMEOUT = "slurm_timeout"
    SLURM_OUT_OF_MEMORY = "slurm_out_of_memory"
    SLURM_NODE_FAIL = "slurm_node_fail"
    SLURM_PREEMPTED = "slurm_preempted"
    SLURM_CANCELLED = "slurm_cancelled"
    SLURM_FAILED = "slurm_failed"
    SLURM_SUBMIT_FAILED = "slurm_submit_failed"
    # decided by the agent inside the run
    AGENT_EXCEPTION = "agent_exception"
    AGENT_ERROR = "agent_error"
    INPUT_INVALID = "input_invalid"
    ENVIRONMENT = "environment"
    CONFIG_MISSING = "config_missing"
    CONFIG_INVALID = "config_invalid"
    RESULT_EXISTS = "result_exists"
    NO_GPU = "no_gpu"
    DEVICE_MISMATCH = "device_mismatch"
    ENGINE_START_FAILED = "engine_start_failed"
    ENGINE_ERROR = "engine_error"
    TOKEN_COUNT_MISMATCH = "token_count_mismatch"
    SERVER_NOT_READY = "server_not_ready"
    SERVER_CRASHED = "server_crashed"
    REQUEST_ERRORS = "request_errors"

    @property
    def is_input_problem(self) -> bool:
        """Whether re-running the same study file would fail the same way (fix the input)."""
        return self in INPUT_REASONS


#: reasons a resume cannot cure: the study file (or what it names) must be fixed first
INPUT_REASONS = frozenset({
    FailureReason.MODEL_NOT_FOUND, FailureReason.DATASET_NOT_FOUND, FailureReason.INPUT_INVALID,
    FailureReason.CONFIG_INVALID, FailureReason.TOKEN_COUNT_MISMATCH,
})


#: reasons that files written by earlier versions hold, and what each means now
LEGACY_REASONS: dict[str, FailureReason] = {
    "UserInputError": FailureReason.INPUT_INVALID,
    "EnvironmentProblem": FailureReason.ENVIRONMENT,
}


def reason_of(value: str | None) -> FailureReason | None:
    """The reason named by a string from a file (None for unknown or missing)."""
    if value is None:
        return None
    try:
        return FailureReason(value)
    except ValueError:
        return None


class ExitCode(IntEnum):
    """Exit codes of ``harness`` and of the agent (python -m harness.agent)."""

    OK = 0
    #: harness: some runs failed; agent: the run failed (error.json says why)
    FAILED = 1
    #: invalid input (a study file, an option); nothing was started
    USAGE = 2
    #: the machine lacks something (engine, image, sensor) or the output folder is unusable
    ENVIRONMENT = 3
    #: one run failed where a single run was asked for (harness run)
    RUN_FAILED = 4
    #: the study stopped early (max_consecutive_failures, a lost engine)
    ABORTED = 5
    #: agent: the output folder could not be written (sysexits EX_IOERR)
    STORAGE = 74
    #: stopped by Ctrl+C or SIGTERM
    INTERRUPTED = 130
