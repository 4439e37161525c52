"""Options of the Slurm executor (execution.slurm): one sbatch job per run."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
TIME_PATTERN = re.compile(r"^(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2})$")

#: sbatch options the executor sets itself; giving them in extra_args would break tracking
RESERVED_OPTIONS = frozenset({
    "--parsable", "--wrap", "--output", "--error", "--job-name", "--dependency", "--chdir",
    "--export", "--array", "--wait",
})


class SlurmOptions(BaseModel):
    """How the runs of a study become Slurm jobs (docs/slurm.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = Field(None, pattern=r"^[A-Za-z0-9_.,-]+$")
    account: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    time: str = Field("1:00:00", description="job time limit, Slurm form (e.g. 30, 1:30:00, "
                      "1-12:00:00)")
    mem: str | None = Field(None, pattern=r"^[0-9]+[KMGT]?$",
                            description="memory per job (--mem), e.g. 4G")
    gpus_per_run: int | None = Field(
        None, ge=0, le=64, description="GPUs per job (--gres=gpu:N); default: what the run's "
        "engine uses, none on the CPU")
    cpus_per_run: int | None = Field(None, ge=1, le=1024, description="--cpus-per-task")
    extra_args: list[str] = Field(default_factory=list,
                                  description="more sbatch options, each --name or --name=value")
    setup: list[str] = Field(
        default_factory=list, description="shell lines the job runs on the node before the "
        "run (module load ..., source VENV/bin/activate)")
    python: str | None = Field(
        None, description="the Python on the nodes that has this package (default: the "
        "controller's own interpreter, on the shared filesystem)")
    max_jobs: int = Field(8, ge=1, le=10_000, description="jobs queued or running at once")
    poll_s: float = Field(5.0, ge=0.1, le=3600, description="seconds between queue checks")

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        if not TIME_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a Slurm time limit; expected MM, MM:SS, "
                             "HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 30, 1:30:00, 1-12:00:00)")
        return value

    @field_validator("extra_args")
    @classmethod
    def _long_options(cls, value: list[str]) -> list[str]:
        for arg in value:
            name = arg.split("=", 1)[0]
            if not re.match(r"^--[a-z][a-z0-9-]*$", name):
                raise ValueError(f"{arg!r}: expected an sbatch option as --name or --name=value")
            if name in RESERVED_OPTIONS:
                raise ValueError(f"{arg!r}: the executor sets {name} itself")
        return value

    @field_validator("setup")
    @classmethod
    def _single_lines(cls, value: list[str]) -> list[str]:
        for line in value:
            if "\n" in line or "\r" in line:
                raise ValueError(f"{line!r}: one shell line per entry")
        return value
