"""NVML's clock-event ("throttle") reasons: their bits by name, and which ones a validity check names."""

from __future__ import annotations

#: NVML clock-event ("throttle") reason bits, from nvml.h (nvmlClocksEventReason*).
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
#: reasons that mean the clocks were held down by power or heat (a validity warning)
PERFORMANCE_THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


def throttle_names(mask: int) -> list[str]:
    """Names of the reason bits set in an NVML clock-event mask."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
