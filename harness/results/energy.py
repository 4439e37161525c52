"""Energy figures in a result: per device, host CPU and DRAM, the prefill split, uncertainty budgets."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from harness.results.base import ResultModel as _Model

#: how energy was obtained; "simulated": read from simulated GPUs (``readout`` says how)
EnergyMethod = Literal["nvml_counter", "nvml_power_integration", "rapl", "simulated", "unavailable"]
#: what was read: energy counters, integrated power samples, or some devices each way
Readout = Literal["counter", "power_integration", "mixed"]


class UncertaintyTerm(_Model):
    """One term of a budget: a standard uncertainty in the figure's unit (docs/methodology.md)."""

    name: str
    standard: float
    systematic: bool = False


class Uncertainty(_Model):
    """A figure's uncertainty budget; ``expanded`` is ``coverage_factor`` x the combined one."""

    expanded: float
    coverage_factor: float = 2.0
    relative: float | None = None
    expanded_random: float = Field(description="the expanded uncertainty without systematic terms")
    dominant: str
    terms: list[UncertaintyTerm] = Field(default_factory=list)


class DeviceEnergy(_Model):
    """Energy and power of one measured device over a window."""

    device: str
    energy_j: float | None = None
    idle_power_w: float | None = None
    mean_power_w: float | None = None
    peak_power_w: float | None = None
    energy_method: EnergyMethod | None = None
    readout: Readout | None = None
    dynamic_energy_j: float | None = None
    samples: int = 0
    temperature_start_c: float | None = None
    temperature_end_c: float | None = None
    temperature_max_c: float | None = None
    peak_memory_used_bytes: int | None = None
    loaded_idle_power_w: float | None = None
    counter_updates: int | None = Field(default=None, description="counter changes seen by the sampler")
    counter_update_period_s: float | None = Field(default=None, description="upper estimate")
    uncertainty: dict[str, Uncertainty] = Field(default_factory=dict)
    gpu_processes: list[int] | None = Field(
        default=None, description="PIDs NVML listed at the window edges; null: unknown")


class HostEnergy(_Model):
    """CPU package and DRAM energy (RAPL) over the same window as the GPUs."""

    energy_method: EnergyMethod = "unavailable"
    unavailable_reason: str | None = None
    energy_j: float | None = Field(default=None, description="package + DRAM")
    cpu_energy_j: float | None = Field(default=None, description="the package domains")
    dram_energy_j: float | None = Field(default=None, description="the DRAM domains (null: none)")
    mean_power_w: float | None = None
    window_s: float | None = None
    devices: list[DeviceEnergy] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    uncertainty: dict[str, Uncertainty] = Field(
        default_factory=dict, description="field name -> its uncertainty budget")


class Energy(_Model):
    """Energy over the measured window and the metrics derived from it; null when unknown."""

    energy_method: EnergyMethod = "unavailable"
    readout: Readout | None = None
    unavailable_reason: str | None = None
    energy_j: float | None = None
    total_energy_j: float | None = Field(
        default=None, description="energy_j plus host.energy_j (GPU runs), or energy_j (CPU runs)")
    host: HostEnergy | None = Field(
        default=None, description="CPU and DRAM beside the GPUs; null when the CPU is measured")
    idle_power_w: float | None = None
    dynamic_energy_j: float | None = None
    mean_power_w: float | None = None
    peak_power_w: float | None = None
    j_per_output_token: float | None = None
    j_per_token: float | None = None
    j_per_request: float | None = None
    wh_per_1k_requests: float | None = None
    output_tokens_per_j: float | None = None
    devices: list[DeviceEnergy] = Field(default_factory=list)
    samples: int | None = Field(default=None, description="null when energy is unavailable")
    window_s: float | None = Field(default=None, description="the sensor's window (counter edges)")
    phase_edges_s: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="each phase's sensor window edges, time.perf_counter() (CLOCK_MONOTONIC)")
    idle_window_s: float | None = None
    idle_samples: int | None = None
    sample_interval_ms: int | None = None
    sampler_cpu_s: float | None = Field(default=None, description="CPU time the sampler thread used")
    notes: list[str] = Field(default_factory=list)
    loaded_idle_power_w: float | None = Field(default=None, description="model resident, engine idle")
    loaded_idle_window_s: float | None = None
    loaded_idle_samples: int | None = None
    uncertainty: dict[str, Uncertainty] = Field(
        default_factory=dict, description="field name -> its uncertainty budget"
    )


class PrefillSplit(_Model):
    """Energy and time of a prefill-only pass over the same batches; decode = total - prefill."""

    measured: bool = False
    reason: str | None = None
    prefill_window_s: float | None = None
    prefill_energy_j: float | None = None
    decode_energy_j: float | None = None
    prefill_j_per_input_token: float | None = None
    decode_j_per_output_token: float | None = None
    prefill_iterations: int | None = Field(default=None, description="passes in the prefill window")
    prefill_energy_method: EnergyMethod | None = None
    prefill_samples: int = 0
    decode_window_s: float | None = None
    basis: Literal["dynamic"] | None = Field(default=None, description="energies above loaded idle")
    transfer: Literal["first_token_time", "passes"] | None = Field(
        default=None, description="how the prefill passes' energy is scaled to the main window")
    prefill_engine_s: float | None = Field(default=None, description="inside generate(), scaled")
    host_overhead_share: float | None = Field(default=None, description="outside generate()")
    device_idle_share: float | None = Field(default=None, description="1 - mean NVML utilisation")
    uncertainty: dict[str, Uncertainty] = Field(default_factory=dict)
