"""Settling a run whose Slurm job ended: the node's record merged, Slurm's state mapped.

Used by the attached controller, by a resume that re-attaches, and by ``harness study status``
on a detached study. Whoever calls it holds the study lock: only one writer of manifest.json.
"""

from __future__ import annotations

from pathlib import Path

from harness.controller.gpucontrol import FileJournal, left_by_node
from harness.controller.outcome import mark_done, read_result, written_at
from harness.controller.slurm.commands import JobState, SlurmCli
from harness.controller.slurm.job import NODE_GPU_JOURNAL, NODE_RECORD, NodeRecord
from harness.controller.slurm.states import is_live, reason_for
from harness.results import manifest as manifest_io
from harness.results.io import read_model
from harness.results.reasons import FailureReason
from harness.results.schema import Manifest, RunRecord

#: what a run's record takes from the node's copy; attempts, start and job stay the controller's
#: (the GPUs the node ran on are the node record's own ``gpus``, copied besides)
FROM_NODE = ("status", "reason", "message", "runner", "container_id", "image", "exit_code",
             "finished_at", "duration_s", "agent_s", "headline", "thermal", "gpu_uuids",
             "gpu_settings")


def node_record(run_dir: Path, job_id: str | None) -> NodeRecord | None:
    """The record the node side wrote for this job (None if absent, unreadable or another job's)."""
    path = run_dir / NODE_RECORD
    if not path.is_file():
        return None
    try:
        node = read_model(path, NodeRecord)
    except (ValueError, OSError):
        return None
    if job_id is not None and node.job_id not in (None, job_id):
        return None
    return node


def _output_tail(run_dir: Path, job_id: str, lines: int = 5) -> str:
    path = run_dir / f"slurm-{job_id}.out"
    try:
        tail = path.read_text("utf-8", "replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f"; the end of {path.name}: " + " | ".join(tail) if tail else ""


def settle(study_dir: Path, record: RunRecord, state: JobState | None, *,
           cancelled_here: bool = False) -> None:
    """Record how a run whose job ended went; name GPU settings its job left on its node."""
    outcome(study_dir, record, state, cancelled_here=cancelled_here)
    journal = FileJournal(study_dir / "runs" / record.run_id / NODE_GPU_JOURNAL)
    left = left_by_node(journal, record.slurm.node if record.slurm else None)
    if left is not None:
        record.message = f"{record.message}; {left}" if record.message else left


def outcome(study_dir: Path, record: RunRecord, state: JobState | None, *,
            cancelled_here: bool = False) -> None:
    """Record the outcome of a run whose job is no longer live.

    A result the run completed counts whatever Slurm says; TIMEOUT, OUT_OF_MEMORY, NODE_FAIL,
    PREEMPTED and CANCELLED give their slurm_* reason (a job this controller cancelled on
    Ctrl+C, ``cancelled_here``, leaves the run interrupted, also when Slurm no longer knows
    it); otherwise the node's record decides, and a job that ended without one is slurm_failed.
    """
    job = record.slurm
    job_id = job.job_id if job else None
    run_dir = study_dir / "runs" / record.run_id
    if job is not None:
        job.state = state.state if state else "UNKNOWN"
        job.node = (state.node if state else None) or job.node
    node = node_record(run_dir, job_id)
    if node is not None:
        for name in FROM_NODE:
            setattr(record, name, getattr(node.record, name))
        record.gpus = list(node.gpus)
        if job is not None:
            job.node = job.node or node.node
    if record.status != "done":
        result, _ = read_result(run_dir)
        if result is not None:  # complete before the job was stopped
            mark_done(record, result, written_at(run_dir / "result.json"))
    if record.status == "done":
        return
    said = f"Slurm job {job_id} ended {state.state}" if state else (
        f"Slurm no longer knows job {job_id}")
    if state and state.detail:
        said += f" ({state.detail})"
    reason = reason_for(state.state, has_record=node is not None) if state else (
        None if node is not None else FailureReason.SLURM_FAILED)
    if reason is None:  # the node's record says why
        record.status = "failed" if record.status == "running" else record.status
        return
    record.finished_at = record.finished_at or manifest_io.now_iso()
    if cancelled_here and (state is None or reason == FailureReason.SLURM_CANCELLED):
        record.status, record.reason = "interrupted", FailureReason.INTERRUPTED
        record.message = f"{said}: cancelled by this controller when it was stopped"
        return
    record.status, record.reason = "failed", reason
    node_said = f"; the node recorded: {node.record.message}" if node and node.record.message \
        else ""
    record.message = said + node_said + ("" if node else _output_tail(run_dir, job_id or ""))


def live_jobs(manifest: Manifest) -> dict[str, str]:
    """Run id -> job id of the runs whose job was submitted and not yet settled."""
    return {r.run_id: r.slurm.job_id for r in manifest.runs
            if r.status == "running" and r.slurm is not None}


def poll(study_dir: Path, manifest: Manifest, tracked: dict[str, str], cli: SlurmCli
         ) -> list[RunRecord]:
    """Ask Slurm about the tracked jobs; settle the finished ones (dropped from ``tracked``).

    Returns the records settled now; live jobs get their state and node refreshed.
    """
    states = cli.query(tracked.values())
    settled = []
    for run_id, job_id in list(tracked.items()):
        record = manifest.record(run_id)
        state = states.get(job_id)
        if state is not None and is_live(state.state):
            if record.slurm is not None:
                record.slurm.state = state.state
                record.slurm.node = state.node or record.slurm.node
            continue
        settle(study_dir, record, state)
        del tracked[run_id]
        settled.append(record)
    return settled
