"""The study: a base experiment, a sweep over it, and how to execute the runs."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.backends import registry
from harness.config.experiment import Experiment, FingerprintMode, Order, Runner
from harness.config.slurm import SlurmOptions
from harness.testing.simgpu.config import SimulatedGpus

MAX_RUNS_DEFAULT = 1000


class Execution(BaseModel):
    """How the planned runs are executed; excluded from experiment ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cycles: int = Field(1, ge=1, le=1000)
    order: Order = "interleaved"
    seed: int = 1234
    gap_s: float = Field(0.0, ge=0, le=86_400)
    cycle_gap_s: float = Field(0.0, ge=0, le=86_400)
    cooldown_to_c: float | None = Field(
        None, gt=0, le=120, description="wait until the assigned GPUs are below this"
    )
    cooldown_timeout_s: float = Field(300.0, ge=0, le=86_400)
    timeout_s: float = Field(1800.0, gt=0, le=7 * 86_400)
    runner: Runner = "auto"
    gpus: list[int] = Field(default_factory=lambda: [0])
    max_parallel: int = Field(
        1, ge=1, le=1024, description="runs at once, each on its own GPUs (on the CPU: its own "
        "CPU set); fewer run at once when the GPUs or CPUs listed do not go round",
    )
    max_consecutive_failures: int = Field(5, ge=1)
    engine_wait_s: float = Field(
        120.0, ge=0, le=86_400,
        description="how long to wait for a container engine that stopped answering",
    )
    mem_limit: str | None = Field(
        None, pattern=r"^[0-9]+[bkmg]?$", description="memory limit per run, e.g. 16g"
    )
    pids_limit: int = Field(4096, ge=16)
    max_runs: int = Field(
        MAX_RUNS_DEFAULT, ge=1, description="refuse plans with more runs unless raised"
    )
    model_fingerprint: FingerprintMode = Field(
        "fast", description="fingerprint of the model's files each run records: fast (weight "
        "files over 1 MiB sampled: sizes, safetensors headers, blocks; every other file whole) "
        "or full (SHA-256 of every byte)",
    )
    simulated_gpus: SimulatedGpus | None = Field(
        None, description="measure simulated GPUs instead of the system's (docs/simulated-gpu.md)"
    )
    executor: Literal["local", "slurm"] = Field(
        "local", description="local (this host) or slurm (one job per run; docs/slurm.md)")
    slurm: SlurmOptions | None = None

    @field_validator("gpus")
    @classmethod
    def _distinct_gpus(cls, value: list[int]) -> list[int]:
        if any(g < 0 for g in value):
            raise ValueError("GPU indices are >= 0")
        if len(set(value)) != len(value):
            raise ValueError("GPU indices must be distinct")
        return value

    @model_validator(mode="after")
    def _simulated_gpus_exist(self) -> Execution:
        sim = self.simulated_gpus
        if sim is not None and any(g >= sim.count for g in self.gpus):
            raise ValueError(f"gpus {self.gpus} names GPUs beyond the {sim.count} simulated ones "
                             f"(simulated_gpus.count; indices 0-{sim.count - 1})")
        return self

    @model_validator(mode="after")
    def _slurm_block(self) -> Execution:
        if self.executor == "slurm" and self.slurm is None:
            raise ValueError("executor: slurm needs a slurm block (execution.slurm: {time: ...,"
                             " mem: ...}; docs/slurm.md)")
        if self.executor != "slurm" and self.slurm is not None:
            raise ValueError("execution.slurm is given but executor is local; set executor: "
                             "slurm or remove the slurm block")
        return self

    def gpus_per_run(self, experiment: Experiment) -> int:
        """GPUs a run of ``experiment`` gets.

        What its engine uses (tensor x pipeline parallel, 0 on the CPU), or on simulated GPUs
        ``simulated_gpus.per_run`` (default: that, at least 1, so CPU runs drive simulated GPUs
        too).
        """
        sim = self.simulated_gpus
        if sim is None:
            return experiment.gpus_per_run()
        return sim.per_run or max(1, experiment.gpus_per_run())

    def placement_problem(self, experiment: Experiment) -> str | None:
        """Why runs of ``experiment`` cannot get their GPUs from ``gpus`` (None when they can)."""
        need = self.gpus_per_run(experiment)
        if need <= len(self.gpus):
            return None
        why = ("simulated_gpus.per_run" if self.simulated_gpus and self.simulated_gpus.per_run
               else f"backend {experiment.backend}: tensor x pipeline parallel")
        return (f"experiment {experiment.id} needs {need} GPUs per run ({why}), but "
                f"execution.gpus lists {len(self.gpus)} ({self.gpus}); list at least {need}")


class Study(BaseModel):
    """A study file, validated; the sweep is expanded by ``harness.config.sweep``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    description: str = ""
    experiment: dict[str, Any]
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    include: list[dict[str, Any]] = Field(default_factory=list)
    execution: Execution = Execution()
    images: dict[str, str] = Field(default_factory=dict)
    output_dir: str = "results"
    hf_cache: str | None = Field(
        None, description="host Hugging Face cache mounted read-only (default: $HF_HOME)"
    )

    @field_validator("sweep")
    @classmethod
    def _non_empty_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in value.items():
            if not values:
                raise ValueError(f"sweep axis {key!r} is empty; give at least one value")
            if len({_hashable(v) for v in values}) != len(values):
                raise ValueError(f"sweep axis {key!r} repeats a value")
        return value

    @field_validator("images")
    @classmethod
    def _known_backends(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key not in registry.names():
                raise ValueError(registry.unknown_backend(key))
        return value

    @field_validator("output_dir")
    @classmethod
    def _relative_output(cls, value: str) -> str:
        path = PurePosixPath(value)
        if ".." in path.parts:
            raise ValueError("output_dir must not contain '..'")
        return value


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
