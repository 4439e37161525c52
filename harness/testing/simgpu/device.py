"""One simulated GPU: its true power over time and what its sensors report about it.

The true power is the engine state's power (``StatePower``), with the dynamic part (above
loaded idle) scaled by a locked SM clock, then held at the power limit. Every reading is
derived from the one ``Timeline`` of that true power:

- the energy counter is the true energy (times 1 + bias) as it stood at its last update,
  updates falling every ``counter_period_ms`` at a phase of the device's own, on top of a
  large base, and restarting from 0 at ``counter_reset_after_s``;
- the power reading is the trailing mean over ``power_average_s`` of what a sensor saw that
  looks only ``power_sensor_duty`` of every ``power_sensor_period_ms``;
- the temperature follows the power as a first-order system (exact per constant segment).

Not thread-safe on its own: ``SimulatedNvml`` serialises every call into it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.agent.activity import Activity
from harness.testing.simgpu.config import SimulatedGpus, StatePower
from harness.testing.simgpu.timeline import Timeline

#: the counter of device i starts near (i + 1) x this many millijoules, like a driver that has
#: been up for a while (the harness only ever uses differences)
COUNTER_BASE_MJ = 10**12
#: golden-ratio spacing of the devices' counter and sensor phases within one period
_PHASE_STEP = 0.6180339887498949
#: NVML clock-event reason bits (nvml.h): idle, and the software power cap
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
BUSY = (Activity.PREFILL, Activity.DECODE)


@dataclass
class Settings:
    """What a privileged process set on a device (None: the default)."""

    power_limit_w: float | None = None
    gpu_locked_mhz: tuple[int, int] | None = None
    mem_locked_mhz: tuple[int, int] | None = None


@dataclass
class SimDevice:
    """One simulated device; ``t_start`` is when its NVML instance started (perf_counter)."""

    index: int
    config: SimulatedGpus
    t_start: float
    follows_engine: bool = False
    state: Activity = Activity.NO_CONTEXT
    settings: Settings = field(default_factory=Settings)
    timeline: Timeline = field(default_factory=Timeline)
    states: list[tuple[float, str]] = field(default_factory=list)
    _temp_t: float = 0.0
    _temp_c: float = 0.0
    _temp_segment: int = 0

    def __post_init__(self) -> None:
        self.levels: StatePower = self.config.device_power_w(self.index)
        self.states.append((self.t_start, self.state.value))
        self.timeline.step(self.t_start, self.true_power_w())
        self._temp_t = self.t_start
        self._temp_c = self._equilibrium_c(self.timeline.power(self.t_start))

    @property
    def uuid(self) -> str:
        """This device's UUID."""
        return self.config.uuid(self.index)

    @property
    def phase_share(self) -> float:
        """Offset of this device's counter updates and sensor looks, as a share of a period."""
        return (self.index * _PHASE_STEP) % 1.0

    # --- true power ----------------------------------------------------------------------

    def power_limit_w(self) -> float:
        """The enforced power limit."""
        limit = self.settings.power_limit_w
        return self.config.power_limit_w if limit is None else limit

    def _clock_share(self) -> float:
        locked = self.settings.gpu_locked_mhz
        if locked is None:
            return 1.0
        return min(1.0, locked[1] / self.config.sm_clock_max_mhz)

    def demand_w(self) -> float:
        """Power the current state would draw without a power limit."""
        levels = self.levels
        level = {
            Activity.NO_CONTEXT: levels.no_context,
            Activity.LOADED_IDLE: levels.loaded_idle,
            Activity.PREFILL: levels.prefill,
            Activity.DECODE: levels.decode,
        }[self.state]
        if self.state in BUSY and level > levels.loaded_idle:
            share = self._clock_share() ** self.config.clock_power_exponent
            level = levels.loaded_idle + (level - levels.loaded_idle) * share
        return level

    def true_power_w(self) -> float:
        """True board power now: the demand, held at the power limit."""
        return min(self.demand_w(), self.power_limit_w())

    def capped(self) -> bool:
        """Whether the power limit holds the power down now."""
        return self.demand_w() > self.power_limit_w()

    def enter(self, state: Activity, t_s: float) -> None:
        """The engine entered ``state`` at ``t_s``."""
        if state == self.state:
            return
        self.state = state
        self.states.append((max(t_s, self.states[-1][0]), state.value))
        self.timeline.step(t_s, self.true_power_w())

    def apply(self, settings: Settings, t_s: float) -> None:
        """New settings take effect at ``t_s``."""
        self.settings = settings
        self.timeline.step(t_s, self.true_power_w())

    # --- readings --------------------------------------------------------------------------

    def counter_mj(self, t_s: float) -> int:
        """The total-energy counter at ``t_s`` (millijoules)."""
        c = self.config
        period = c.counter_period_ms / 1000.0
        t_u = t_s
        if period > 0:
            phase = self.phase_share * period
            t_u = phase + math.floor((t_s - phase) / period) * period
        t_u = max(t_u, self.t_start)
        base = (self.index + 1) * COUNTER_BASE_MJ
        energy = self.timeline.between(self.t_start, t_u)
        if c.counter_reset_after_s is not None:
            t_reset = self.t_start + c.counter_reset_after_s
            if t_u >= t_reset:
                base = 0
                energy = self.timeline.between(t_reset, t_u)
        return int(base + energy * (1.0 + c.sensor_bias) * 1000.0)

    def power_mw(self, t_s: float) -> int:
        """The power reading at ``t_s`` (milliwatts): trailing mean of a part-time sensor."""
        c = self.config
        start = max(t_s - c.power_average_s, self.t_start)
        period = c.power_sensor_period_ms / 1000.0
        mean = None
        if c.power_average_s > 0 and t_s > start:
            mean = self.timeline.observed_mean(
                start, t_s, period, c.power_sensor_duty, self.phase_share * period
            )
        if mean is None:
            mean = self.timeline.power(t_s)
        return int(round(mean * (1.0 + c.sensor_bias) * 1000.0))

    def _equilibrium_c(self, power_w: float) -> float:
        c = self.config
        return c.idle_temperature_c + c.temperature_c_per_w * (power_w - self.levels.no_context)

    def temperature_c(self, t_s: float) -> float:
        """Die temperature at ``t_s``: first-order response to the true power."""
        tau = self.config.temperature_tau_s
        tl = self.timeline
        if t_s <= self._temp_t:
            return self._temp_c
        i = max(self._temp_segment, 0)
        t, temp = self._temp_t, self._temp_c
        while True:
            end = tl.times[i + 1] if i + 1 < len(tl.times) else math.inf
            upto = min(end, t_s)
            target = self._equilibrium_c(tl.powers[i])
            temp = target + (temp - target) * math.exp(-(upto - t) / tau)
            t = upto
            if upto >= t_s:
                break
            i += 1
        self._temp_t, self._temp_c, self._temp_segment = t, temp, i
        return temp

    def sm_clock_mhz(self) -> int:
        """Current SM clock: lowest when idle, the locked or highest when busy, less when capped."""
        c = self.config
        if self.state not in BUSY:
            return min(c.sm_clocks_mhz)
        locked = self.settings.gpu_locked_mhz
        top = locked[1] if locked is not None else c.sm_clock_max_mhz
        if self.capped():
            share = (self.power_limit_w() / self.demand_w()) ** (1.0 / c.clock_power_exponent)
            top = max(min(c.sm_clocks_mhz), int(top * share))
        return top

    def speed(self) -> float:
        """Share of full speed the engine computes at now: the SM clock in use over the highest."""
        if self.state not in BUSY:
            return 1.0
        return self.sm_clock_mhz() / self.config.sm_clock_max_mhz

    def entered_s(self) -> float:
        """When the device entered its current state."""
        return self.states[-1][0]

    def mem_clock_mhz(self) -> int:
        """Current memory clock (the locked one when set)."""
        locked = self.settings.mem_locked_mhz
        return locked[1] if locked is not None else self.config.mem_clock_mhz

    def event_reasons(self) -> int:
        """NVML clock-event reason bits now."""
        if self.state not in BUSY:
            return REASON_GPU_IDLE
        return REASON_SW_POWER_CAP if self.capped() else 0

    def busy(self) -> bool:
        """Whether the engine computes on it now (utilisation 100 %)."""
        return self.state in BUSY

    def loaded(self) -> bool:
        """Whether a model is resident (memory in use, a compute process listed)."""
        return self.state != Activity.NO_CONTEXT
