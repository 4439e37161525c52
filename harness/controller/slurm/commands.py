"""Slurm's command-line tools (sbatch, squeue, scontrol, sacct, scancel) behind one class.

Every call goes through one ``run`` function (subprocess.run by default) so tests can stand in
a scripted Slurm; nothing here decides what a state means (see ``states``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


@dataclass(frozen=True)
class JobState:
    """What Slurm says of one job: its state and the node it runs or ran on."""

    job_id: str
    state: str
    node: str | None = None
    #: scontrol's reason or exit code, when it gave one
    detail: str = ""


class SlurmCli:
    """sbatch/squeue/scontrol/sacct/scancel, with errors turned into the project's exceptions."""

    def __init__(self, run: Runner = _run) -> None:
        self.run = run

    @staticmethod
    def available() -> str | None:
        """Why Slurm's tools cannot be used here (None when sbatch and squeue are on PATH)."""
        missing = [t for t in ("sbatch", "squeue", "scontrol", "scancel") if not shutil.which(t)]
        if missing:
            return (f"Slurm's {', '.join(missing)} not found on PATH; the slurm executor submits "
                    "from a host with Slurm's client tools (docs/slurm.md)")
        return None

    def _call(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return self.run(args)
        except FileNotFoundError as e:
            raise EnvironmentProblem(f"{args[0]} not found: {e}") from e
        except subprocess.TimeoutExpired as e:
            raise EnvironmentProblem(f"{args[0]} did not answer within {e.timeout:g} s") from e

    def submit(self, args: Sequence[str], script: Path) -> str:
        """Submit a job script with these sbatch options; its job id.

        Raises RunFailure(slurm_submit_failed) when sbatch refuses it.
        """
        done = self._call(["sbatch", "--parsable", *args, str(script)])
        out = done.stdout.strip()
        if done.returncode != 0 or not out:
            why = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
            raise RunFailure(f"sbatch refused the job: {why}",
                             reason=FailureReason.SLURM_SUBMIT_FAILED)
        return out.splitlines()[-1].split(";", 1)[0]  # "ID" or "ID;CLUSTER"

    def query(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The state of each job Slurm still knows (squeue, then scontrol, then sacct)."""
        ids = [j for j in job_ids]
        if not ids:
            return {}
        found = self._squeue(ids)
        for job_id in ids:
            if job_id not in found:
                state = self._scontrol(job_id) or self._sacct(job_id)
                if state is not None:
                    found[job_id] = state
        return found

    def _squeue(self, ids: list[str]) -> dict[str, JobState]:
        done = self._call(["squeue", "-h", "--states=all", "-j", ",".join(ids), "-o", "%i|%T|%N"])
        found: dict[str, JobState] = {}
        if done.returncode != 0:
            return found  # every id unknown ("Invalid job id specified"): ask scontrol
        for line in done.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[0] in ids:
                found[parts[0]] = JobState(parts[0], parts[1], parts[2] or None)
        return found

    def _scontrol(self, job_id: str) -> JobState | None:
        done = self._call(["scontrol", "show", "job", "-o", job_id])
        if done.returncode != 0 or not done.stdout.strip():
            return None
        fields = parse_scontrol(done.stdout)
        if "JobState" not in fields:
            return None
        node = fields.get("NodeList")
        detail = ", ".join(f"{k} {fields[k]}" for k in ("Reason", "ExitCode")
                           if fields.get(k) not in (None, "None", "0:0"))
        return JobState(job_id, fields["JobState"],
                        None if node in (None, "(null)", "") else node, detail)

    def _sacct(self, job_id: str) -> JobState | None:
        """From accounting, when it answers (often disabled: then None)."""
        for extra in ([], ["-c"]):  # the database, then the job completion file
            done = self._call(["sacct", *extra, "-n", "-P", "-X", "-j", job_id,
                               "-o", "JobID,State,NodeList"])
            for line in done.stdout.splitlines() if done.returncode == 0 else []:
                parts = line.strip().split("|")
                if len(parts) == 3 and parts[0] == job_id:
                    state = parts[1].split()[0] if parts[1] else ""
                    return JobState(job_id, state, parts[2] or None, "from sacct")
        return None

    def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel these jobs (jobs already gone are not an error)."""
        ids = list(job_ids)
        if ids:
            self._call(["scancel", *ids])


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show job -o`` output (Key=Value ...) as a dict; values hold no spaces."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields
