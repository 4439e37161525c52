"""Whether the GPU settings an experiment asked for held in the measured window.

The host applied ``gpu:`` (power limit, locked clocks) before the run; here the agent checks
what the GPUs did while it measured: the enforced power limit NVML reports at the window's
end (at the sensor's opening where that is all there is), the mean power
against that limit, and the sampled SM and memory clocks while the GPU computed. A clock that
ran below its lock because of the power cap or heat is named with those clock-event reasons.
Each setting that did not hold is a named warning: power_limit_not_held, sm_clock_not_held,
memory_clock_not_held.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.agent.metrics import known, ratio
from harness.agent.sensors.base import WindowReading
from harness.agent.sensors.throttle import PERFORMANCE_THROTTLE_MASK, throttle_names
from harness.config.gpu import GpuSettings
from harness.results.schema import Warning_

#: the enforced limit may differ from the requested one by this much (W): NVML rounds to mW
POWER_LIMIT_TOLERANCE_W = 1.0
#: mean power in the window may exceed the requested limit by this share (sensor accuracy)
POWER_OVER_LIMIT_SHARE = 0.05
#: a sampled clock may differ from its lock by this share (the driver picks a nearby step)
CLOCK_TOLERANCE = 0.05
#: share of busy samples that may be off the lock before it counts as not held
CLOCK_OFF_SHARE = 0.1
#: utilisation (%) at which a sample counts as the GPU computing
BUSY_PCT = 50.0


def settings_warnings(
    settings: GpuSettings, window: WindowReading, devices: Mapping[str, Mapping[str, Any]]
) -> list[Warning_]:
    """A warning per requested GPU setting that did not hold on a device in the window."""
    if not settings.any_set:
        return []
    found: list[Warning_] = []
    for dev in devices:
        if settings.power_limit_w is not None:
            found += _power_limit(dev, settings.power_limit_w, window, devices[dev])
        rows = [r for r in window.device_samples(dev)
                if (r.get("utilization_gpu_pct") or 0) >= BUSY_PCT]
        if settings.sm_clock_mhz is not None:
            found += _clock(dev, "sm", settings.sm_clock_mhz, rows)
        if settings.memory_clock_mhz is not None:
            found += _clock(dev, "memory", settings.memory_clock_mhz, rows)
    return found


def _power_limit(dev: str, requested_w: int, window: WindowReading,
                 info: Mapping[str, Any]) -> list[Warning_]:
    # read at the window's end where the sensor did, else when the sensor opened
    enforced = window.power_limits_w.get(dev, info.get("power_limit_w"))
    if enforced is not None and abs(float(enforced) - requested_w) > POWER_LIMIT_TOLERANCE_W:
        return [Warning_(
            code="power_limit_not_held", phase="window",
            message=f"{dev}: the enforced power limit is {float(enforced):.0f} W, not the "
            f"requested gpu.power_limit_w {requested_w} W (another process or the driver "
            "changed it)")]
    mean_w = ratio(window.energy_j.get(dev), window.duration_s)
    if mean_w is not None and mean_w > requested_w * (1 + POWER_OVER_LIMIT_SHARE):
        return [Warning_(
            code="power_limit_not_held", phase="window",
            message=f"{dev}: mean power {mean_w:.1f} W over the window is above the requested "
            f"gpu.power_limit_w {requested_w} W (+{POWER_OVER_LIMIT_SHARE:.0%})")]
    return []


def _clock(dev: str, domain: str, locked_mhz: int, rows: list[dict[str, Any]]) -> list[Warning_]:
    column = "sm_clock_mhz" if domain == "sm" else "mem_clock_mhz"
    field = "sm_clock_mhz" if domain == "sm" else "memory_clock_mhz"
    clocks = known(rows, column)
    if not clocks:
        return []
    off = [r for r in rows if r.get(column) is not None
           and abs(float(r[column]) - locked_mhz) > CLOCK_TOLERANCE * locked_mhz]
    share = len(off) / len(clocks)
    if share <= CLOCK_OFF_SHARE:
        return []
    reasons = 0
    for r in off:
        reasons |= int(r.get("throttle_reasons") or 0) & PERFORMANCE_THROTTLE_MASK
    why = (f" (clock-event reasons: {', '.join(throttle_names(reasons))})" if reasons
           else " (no clock-event reason reported)")
    return [Warning_(
        code=f"{domain}_clock_not_held", phase="window",
        message=f"{dev}: the {domain} clock was off the requested gpu.{field} {locked_mhz} MHz "
        f"in {share:.0%} of busy samples (seen {min(clocks):.0f}-{max(clocks):.0f} MHz){why}")]
