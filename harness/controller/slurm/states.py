"""What a Slurm job state means for a run: still live, or finished with which verdict."""

from __future__ import annotations

from harness.results.reasons import FailureReason

#: states of a job that is queued or running (it may still write its record)
LIVE = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
    "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
})

#: terminal states that name why the job ended, whatever the node managed to write
STATE_REASONS: dict[str, FailureReason] = {
    "TIMEOUT": FailureReason.SLURM_TIMEOUT,
    "DEADLINE": FailureReason.SLURM_TIMEOUT,
    "OUT_OF_MEMORY": FailureReason.SLURM_OUT_OF_MEMORY,
    "NODE_FAIL": FailureReason.SLURM_NODE_FAIL,
    "BOOT_FAIL": FailureReason.SLURM_NODE_FAIL,
    "PREEMPTED": FailureReason.SLURM_PREEMPTED,
    "CANCELLED": FailureReason.SLURM_CANCELLED,
}


def base_state(state: str) -> str:
    """The state word alone (``CANCELLED by 0`` and ``CANCELLED+`` are CANCELLED)."""
    return state.split()[0].rstrip("+") if state.strip() else ""


def is_live(state: str) -> bool:
    """Whether a job in this state is still queued or running."""
    return base_state(state) in LIVE


def reason_for(state: str, *, has_record: bool) -> FailureReason | None:
    """The failure reason of a finished job, or None when the node's own record decides.

    TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, PREEMPTED and CANCELLED name the reason themselves;
    COMPLETED or FAILED defer to what the node recorded, and without a record are
    slurm_failed (the job ended before the run could say anything).
    """
    word = base_state(state)
    if word in STATE_REASONS:
        return STATE_REASONS[word]
    return None if has_record else FailureReason.SLURM_FAILED
