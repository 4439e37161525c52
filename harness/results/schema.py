"""Versioned result and manifest models: the contract between agent, controller and analysis."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from harness.config.datasets import DatasetFile
from harness.config.experiment import Experiment, FingerprintMode
from harness.results.base import ResultModel as _Model
from harness.results.energy import Energy, PrefillSplit
from harness.results.gpusettings import GpuJournalEntry, GpuSettingsRecord
from harness.results.reasons import LEGACY_REASONS, FailureReason, reason_of
from harness.results.serving import ServingResult
from harness.testing.simgpu.config import SimulatedGpus

#: 1.3: gpu_settings (the gpu: values requested, held before and read back);
#: 1.4: model.scheme (fast fingerprints sample weight files only; absent means 1),
#: energy.host.uncertainty (and the host domains'), energy.uncertainty.total_energy_j
RESULT_SCHEMA_VERSION = "1.4"
#: 1.2: per run gpus, gpu_uuids, cpus, numa_nodes, overlapped_with, gpu_settings and slurm;
#: the study's gpu_journal
MANIFEST_SCHEMA_VERSION = "1.2"

RunStatus = Literal["pending", "running", "done", "failed", "interrupted"]


def _known_reason(data: Any) -> Any:
    """Map a reason string from an older file onto a FailureReason (unknown: agent_error).

    An unknown reason's original string is kept at the start of the message.
    """
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        return data
    value = data["reason"]
    if reason_of(value) is not None:
        return data
    data = dict(data)
    if value in LEGACY_REASONS:
        data["reason"] = LEGACY_REASONS[value]
        return data
    data["reason"] = FailureReason.AGENT_ERROR
    message = data.get("message")
    data["message"] = f"{value}: {message}" if message else value
    return data


class RunInfo(_Model):
    """Which run this is."""

    study: str
    experiment_id: str
    cycle: int = Field(ge=1)
    run_id: str


class ImageInfo(_Model):
    """The container image a run used."""

    tag: str
    id: str | None = None
    digest: str | None = None


class GpuLibrary(_Model):
    """Which NVML library GPUs are read through: the system's, or simulated GPUs."""

    kind: Literal["nvml", "simulated"] = "nvml"
    simulated: SimulatedGpus | None = None
    state_dir: str | None = Field(
        None, description="the simulated GPUs' settings folder (as the reader sees it)")
    truth_file: str | None = Field(
        None, description="where the agent's simulated GPUs write their truth at shutdown")

    @model_validator(mode="after")
    def _simulated_given(self) -> GpuLibrary:
        if (self.kind == "simulated") != (self.simulated is not None):
            raise ValueError("simulated GPUs are described (simulated) exactly when kind is simulated")
        return self


class RunSpec(_Model):
    """What the agent is given (config.json in the run folder)."""

    schema_version: str = RESULT_SCHEMA_VERSION
    run: RunInfo
    experiment: Experiment
    model_path: str = Field(description="where the agent finds the model (path or hub id)")
    image: ImageInfo | None = None
    gpu_uuids: list[str] = Field(default_factory=list)
    runner: str = "local"
    model_fingerprint: FingerprintMode = "fast"
    datasets: list[DatasetFile] = Field(default_factory=list)
    gpu_library: GpuLibrary = GpuLibrary()
    #: the GPU settings the host applied before the run (docs/gpu-control.md)
    gpu_settings: GpuSettingsRecord | None = None

    @model_serializer(mode="wrap")
    def _without_defaults_of_later_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The spec as written to config.json: later fields are left out at their defaults.

        Fields added after results schema 1.0 then do not stop an agent in an older image.
        """
        data = handler(self)
        if isinstance(data, dict):
            for name, default in (("model_fingerprint", "fast"), ("datasets", []),
                                  ("gpu_library", GpuLibrary()), ("gpu_settings", None)):
                if getattr(self, name) == default:
                    data.pop(name, None)
        return data


class LatencyStats(_Model):
    """Summary of one latency quantity over requests, in seconds."""

    mean_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    n: int = 0


class Latency(_Model):
    """Per-request latency summaries; None where the backend cannot time tokens."""

    ttft: LatencyStats = LatencyStats()
    itl: LatencyStats = LatencyStats()
    tpot: LatencyStats = LatencyStats()
    e2e: LatencyStats = LatencyStats()
    per_token_timestamps: bool = False
    timestamp_source: str | None = Field(default=None, description="the backend's declared clock")
    clock: str | None = Field(default=None, description="the engine's note on how tokens are timed")


class Warmup(_Model):
    """What the warmup did; excluded from every figure."""

    batches: int = 0
    duration_s: float = 0.0
    final_cv: float | None = None
    target_cv: float | None = None
    converged: bool | None = None
    until_steady: bool = False
    settled: bool | None = None
    settle_s: float = 0.0
    settle_power_w: list[float | None] = Field(default_factory=list, description="per step")
    settle_temperature_c: list[float | None] = Field(default_factory=list, description="per step")
    settle_reason: str | None = None


class Timings(_Model):
    """Wall-clock phases of the run, in seconds."""

    baseline_s: float | None = None
    load_s: float | None = None
    loaded_idle_s: float | None = None
    warmup_s: float | None = None
    window_s: float = 0.0
    total_s: float | None = None
    window_start_unix: float | None = None
    window_end_unix: float | None = None


class Tokens(_Model):
    """Token counts in the measured window."""

    requests: int
    input_tokens: int
    output_tokens: int
    iterations: int = Field(1, description="how many times the workload ran in the window")
    prompts_sha256: str | None = None


class Throughput(_Model):
    """Throughput over the measured window."""

    output_tokens_per_s: float
    total_tokens_per_s: float
    requests_per_s: float


class Compute(_Model):
    """Analytic FLOPs estimate and memory peaks (metadata, not measurements of FLOPs)."""

    non_embedding_params: int | None = None
    flops: float | None = None
    flops_per_s: float | None = None
    peak_memory_allocated_bytes: int | None = None
    peak_memory_used_bytes: int | None = Field(
        default=None, description="NVML used memory, peak over the window, summed over devices"
    )
    flops_formula: str | None = None
    active_params: int | None = Field(default=None, description="per token, without embeddings/LM head")
    lm_head_params: int | None = None
    params_source: str | None = None


class SteadyState(_Model):
    """Whether the measured window was in steady state, and how long it was made to last."""

    verdict: Literal["steady", "not_steady", "unknown"] = "unknown"
    reason: str | None = None
    first_half_power_w: float | None = None
    second_half_power_w: float | None = None
    difference: float | None = Field(default=None, description="|second - first| / first")
    tolerance: float | None = None
    source: str | None = None
    target_s: float | None = None
    counter_target_s: float | None = None
    max_window_s: float | None = None
    ended_by: Literal["target", "cap"] | None = None
    counter_updates: int | None = None
    min_counter_updates: int | None = None


class Interference(_Model):
    """What else used the machine during the measured window (docs/methodology.md)."""

    cpu_count: int | None = None
    host_busy_cpu_s: float | None = None
    own_cpu_s: float | None = None
    own_cpu_source: str | None = None
    other_cpu_s: float | None = None
    other_cpu_share: float | None = Field(default=None, description="of the machine's CPU time")
    own_wait_s: float | None = Field(default=None, description="run-queue wait of the run's threads")
    own_wait_share: float | None = None
    load_average_start: list[float] | None = None
    load_average_end: list[float] | None = None
    other_gpu_processes: int | None = Field(default=None, description="None: unknown")
    notes: list[str] = Field(default_factory=list)


class Warning_(_Model):
    """A named validity warning."""

    code: str
    message: str
    phase: str | None = Field(default=None, description="idle | window | prefill, when it applies")


class ModelFile(_Model):
    """One file of a model's fingerprint (path relative to the model's folder)."""

    path: str
    bytes: int
    sha256: str = Field(description="of every byte, or (sampled) of the size, the safetensors "
                        "header and evenly spaced blocks")
    sampled: bool = False


class ModelIdentity(_Model):
    """Where a run's model came from and a fingerprint of its files (harness.model_identity)."""

    ref: str = Field(description="the model as the experiment names it")
    source: Literal["hub", "folder"]
    hub_id: str | None = None
    revision: str | None = Field(default=None, description="the cached snapshot's commit")
    folder: str | None = Field(default=None, description="where the files were read")
    mode: FingerprintMode = "fast"
    scheme: int = Field(default=1, ge=1, description="which files fast mode samples: 1 (absent "
                        "before schema 1.4) every file over 1 MiB, 2 only weight files")
    fingerprint: str | None = Field(default=None, description="SHA-256 over the file entries")
    files: list[ModelFile] = Field(default_factory=list)
    note: str | None = None


class ExperimentResult(_Model):
    """Everything one run measured (result.json, written last and atomically)."""

    schema_version: str = RESULT_SCHEMA_VERSION
    status: Literal["ok"] = "ok"
    run: RunInfo
    experiment: Experiment
    backend_info: dict[str, Any] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    timings: Timings
    tokens: Tokens
    throughput: Throughput
    latency: Latency = Latency()
    energy: Energy = Energy()
    prefill: PrefillSplit = PrefillSplit()
    warmup: Warmup = Warmup()
    compute: Compute = Compute()
    steady_state: SteadyState = SteadyState()
    interference: Interference = Interference()
    warnings: list[Warning_] = Field(default_factory=list)
    model: ModelIdentity | None = None
    datasets: list[DatasetFile] = Field(default_factory=list)
    serving: ServingResult | None = Field(default=None, description="mode: serving only")
    gpu_settings: GpuSettingsRecord | None = Field(
        default=None, description="power limit and clock locks the host applied (gpu: set)")


class RunError(_Model):
    """What the agent or controller knows about a failed run (error.json)."""

    schema_version: str = RESULT_SCHEMA_VERSION
    run_id: str
    reason: FailureReason
    message: str
    where: Literal["agent", "controller"] = "agent"
    traceback: str | None = None

    _legacy = model_validator(mode="before")(_known_reason)


class SlurmJob(_Model):
    """The Slurm job of a run's latest attempt (executor slurm)."""

    job_id: str
    state: str = Field("PENDING", description="Slurm's job state when last seen")
    node: str | None = None
    submitted_at: str | None = None


class RunRecord(_Model):
    """One run's line in the manifest."""

    run_id: str
    experiment_id: str
    cycle: int
    position: int
    status: RunStatus = "pending"
    attempts: int = 0
    reason: FailureReason | None = None
    message: str | None = None
    runner: str | None = None
    container_id: str | None = None
    image: ImageInfo | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    agent_s: float | None = None
    headline: dict[str, float | None] = Field(default_factory=dict)
    thermal: dict[str, Any] = Field(default_factory=dict)
    gpu_settings: GpuSettingsRecord | None = None
    slurm: SlurmJob | None = None
    gpus: list[int] = Field(default_factory=list, description="host GPU indices (NVML order)")
    gpu_uuids: list[str] = Field(default_factory=list, description="UUIDs of those GPUs")
    cpus: list[int] | None = Field(
        default=None, description="host CPUs the run was pinned to; null: not pinned")
    numa_nodes: list[int] | None = Field(
        default=None, description="NUMA nodes local to its GPUs, its memory bound to them "
        "(docker runner); null: not bound")
    overlapped_with: list[str] = Field(
        default_factory=list,
        description="other runs in flight during its measured window (they shared the host's "
        "power and heat)")

    _legacy = model_validator(mode="before")(_known_reason)


class Manifest(_Model):
    """The study's state, rewritten atomically on every change (manifest.json)."""

    schema_version: str = MANIFEST_SCHEMA_VERSION
    study: str
    study_file_sha256: str
    created_at: str
    updated_at: str
    state: Literal["planned", "running", "complete", "incomplete", "interrupted", "aborted"]
    runner: str | None = None
    runner_reason: str | None = None
    harness_version: str
    message: str | None = None
    working_dir: str | None = Field(
        default=None, description="where the study was started; relative paths resolve from it"
    )
    runs: list[RunRecord]
    datasets: list[DatasetFile] = Field(default_factory=list)
    #: GPU settings about to change, written before the change, cleared once restored
    gpu_journal: list[GpuJournalEntry] = Field(default_factory=list)

    def record(self, run_id: str) -> RunRecord:
        """The record of one run."""
        for rec in self.runs:
            if rec.run_id == run_id:
                return rec
        raise KeyError(run_id)
