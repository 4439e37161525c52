"""What a simulated GPU is like: its power in each engine state, its sensors and its limits.

The defaults resemble an H100-class board: the energy counter updates every 100 ms, and
``nvmlDeviceGetPowerUsage`` is a trailing one-second average (as NVML documents for Ampere and
later: https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceQueries.html, and as measured
by Yang et al., "Part-time Power Measurements: nvidia-smi's Lack of Attention", 2023,
https://arxiv.org/abs/2312.02741, which also found the power sensor sampling only part of the
time). Sensor accuracy: NVML states +/- 5 % of the current draw for its power readings, for
Fermi and Kepler GPUs only (``sensor_bias`` below).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StatePower(BaseModel):
    """True board power in each engine state, in watts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_context: float = Field(60.0, ge=0, description="no CUDA context (before the model loads)")
    loaded_idle: float = Field(110.0, ge=0, description="model resident, engine idle")
    prefill: float = Field(550.0, ge=0, description="processing prompts")
    decode: float = Field(350.0, ge=0, description="generating tokens")


class SimulatedGpus(BaseModel):
    """A set of simulated GPUs (NVML's view of them); see the module docstring for defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(1, ge=1, le=64, description="devices the simulated NVML lists")
    #: GPUs each run gets (default: what its engine uses, tensor x pipeline parallel, at least 1)
    per_run: int | None = Field(None, ge=1, le=64)
    name: str = "Simulated H100 80GB HBM3"
    power_w: StatePower = StatePower()
    #: multiplicative spread of power between devices (device i: 1 + spread * (i / count - 0.5))
    device_spread: float = Field(0.0, ge=0, lt=1)
    #: how often the total-energy counter advances (0: continuously)
    counter_period_ms: float = Field(100.0, ge=0, le=10_000)
    #: nvmlDeviceGetTotalEnergyConsumption raises NotSupported (boards before Volta)
    energy_counter: bool = True
    #: trailing window of nvmlDeviceGetPowerUsage (0: instantaneous)
    power_average_s: float = Field(1.0, ge=0, le=60)
    #: share of each sensing period in which the power sensor looks (1: all the time)
    power_sensor_duty: float = Field(1.0, gt=0, le=1)
    power_sensor_period_ms: float = Field(100.0, gt=0, le=10_000)
    #: relative bias of every power and energy reading, bounded by NVIDIA's stated accuracy:
    #: the NVML reference says nvmlDeviceGetPowerUsage "is accurate to within +/- 5% of current
    #: power draw" on Fermi and Kepler GPUs only; nothing is stated for later GPUs or the energy
    #: counter (docs/methodology.md, section 2.5), so the bound is carried over, not measured
    sensor_bias: float = Field(0.0, ge=-0.05, le=0.05)
    #: time each simulated NVML call takes, in milliseconds
    call_latency_ms: float = Field(0.0, ge=0, le=100)
    #: the energy counter restarts from zero this long after NVML is initialised
    counter_reset_after_s: float | None = Field(None, gt=0)
    power_limit_w: float = Field(700.0, gt=0)
    power_limit_min_w: float = Field(200.0, gt=0)
    power_limit_max_w: float = Field(700.0, gt=0)
    sm_clock_max_mhz: int = Field(1980, gt=0)
    sm_clocks_mhz: tuple[int, ...] = (345, 690, 1020, 1410, 1755, 1980)
    mem_clock_mhz: int = Field(2619, gt=0)
    idle_temperature_c: float = 32.0
    #: degrees per watt above idle at equilibrium, and the thermal time constant
    temperature_c_per_w: float = Field(0.06, ge=0)
    temperature_tau_s: float = Field(20.0, gt=0)
    memory_total_bytes: int = Field(80 * 2**30, gt=0)
    #: device memory in use while a model is resident (NVML's memory.used)
    loaded_memory_bytes: int = Field(20 * 2**30, ge=0)
    #: whether the compute-process list can be read (False: NoPermission, as in some containers)
    process_list: bool = True
    #: whether power limits and locked clocks may be changed (also needs root, as on real GPUs)
    settings_permitted: bool = True
    #: whether clocks can be locked (False: NotSupported, as on boards without the feature)
    clock_locking: bool = True
    #: busy power above loaded idle goes as (clock share) ** this: 1 is linear (a simple
    #: stand-in); about 2-3 resembles real boards, whose voltage falls with the clock
    clock_power_exponent: float = Field(1.0, ge=1, le=4)
    #: the engine is held back while a power cap or a clock lock slows the simulated GPU:
    #: busy time stretches by (highest clock / clock in use), so capped work takes longer
    work_follows_clock: bool = True

    @model_validator(mode="after")
    def _limits_ordered(self) -> SimulatedGpus:
        if not self.power_limit_min_w <= self.power_limit_w <= self.power_limit_max_w:
            raise ValueError("power_limit_w must lie within [power_limit_min_w, power_limit_max_w]")
        if self.per_run is not None and self.per_run > self.count:
            raise ValueError(f"per_run {self.per_run} is more than the {self.count} simulated GPUs")
        if self.loaded_memory_bytes > self.memory_total_bytes:
            raise ValueError("loaded_memory_bytes exceeds memory_total_bytes")
        if self.sm_clock_max_mhz not in self.sm_clocks_mhz:
            raise ValueError("sm_clock_max_mhz must be one of sm_clocks_mhz")
        return self

    def uuid(self, index: int) -> str:
        """The UUID of simulated device ``index`` (stable, recognisably simulated)."""
        return f"GPU-51301a7e-0000-4000-8000-{index:012d}"

    def device_power_w(self, index: int) -> StatePower:
        """Device ``index``'s power levels after the spread between devices."""
        if self.count == 1 or self.device_spread == 0:
            return self.power_w
        factor = 1.0 + self.device_spread * ((index + 0.5) / self.count - 0.5)
        p = self.power_w
        return StatePower(no_context=p.no_context * factor, loaded_idle=p.loaded_idle * factor,
                          prefill=p.prefill * factor, decode=p.decode * factor)
