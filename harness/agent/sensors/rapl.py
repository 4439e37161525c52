"""RAPL sensor: CPU package and DRAM energy from the Linux powercap sysfs tree.

Each zone's ``energy_uj`` is a counter in microjoules that wraps around at
``max_energy_range_uj``. A sampler thread reads every zone every ``interval_ms`` and adds up
the wrap-corrected differences, so a window longer than one wrap period is still measured
correctly as long as the counter wraps at most once between two samples.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent.sensors.base import Sampler, Sensor, WindowReading
from harness.agent.sensors.null import UnavailableSensor

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
_ZONE = re.compile(r"^intel-rapl:(\d+)(?::(\d+))?$")
#: power is derived over at least this long (the counters update about every millisecond, so
#: shorter intervals would show quantisation, even 0 W); a shorter interval's energy is carried
#: into the next sample's power
MIN_POWER_INTERVAL_S = 0.005


class NoRapl(Exception):
    """RAPL cannot be read here; the message says why."""


@dataclass
class Zone:
    """One RAPL domain (a socket's package, or its DRAM) and its running total."""

    key: str
    path: Path
    name: str
    max_range_uj: int | None
    last_uj: int = 0
    last_t: float = 0.0
    pending_uj: int = 0
    total_uj: int = 0
    broken: str | None = None

    def read_uj(self) -> int:
        """The counter's current value, in microjoules."""
        return int((self.path / "energy_uj").read_text().strip())

    def advance(self, value_uj: int) -> int | None:
        """Add the wrap-corrected difference to the last value; return it (None if unknown)."""
        delta = value_uj - self.last_uj
        if delta < 0:
            if self.max_range_uj is None:
                self.broken = "the counter went backwards and max_energy_range_uj is unknown"
                return None
            delta += self.max_range_uj
        self.total_uj += delta
        self.last_uj = value_uj
        return delta


def find_zones(root: Path = DEFAULT_POWERCAP_ROOT) -> list[Zone]:
    """Package and DRAM zones under a powercap tree (psys, core and uncore are left out)."""
    if not root.is_dir():
        raise NoRapl(
            f"no powercap: {root} does not exist (RAPL is not exposed here, as in most virtual "
            "machines; container runtimes may also mask /sys/devices/virtual/powercap)"
        )
    zones: list[Zone] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        match = _ZONE.match(entry.name)
        if not match:
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            continue
        socket = match.group(1)
        if name.startswith("package"):
            key = name if re.fullmatch(r"package-\d+", name) else f"package-{socket}"
        elif name == "dram":
            key = f"dram-{socket}"
        else:
            continue
        try:
            max_range: int | None = int((entry / "max_energy_range_uj").read_text().strip())
        except (OSError, ValueError):
            max_range = None
        zones.append(Zone(key=key, path=entry, name=name, max_range_uj=max_range))
    if not zones:
        raise NoRapl(f"no RAPL package or dram zones under {root}")
    for zone in zones:
        try:
            zone.read_uj()
        except PermissionError as e:
            raise NoRapl(
                f"permission denied reading {zone.path / 'energy_uj'} (readable only by root "
                "since Linux 5.10, after CVE-2020-8694)"
            ) from e
        except (OSError, ValueError) as e:
            raise NoRapl(f"cannot read {zone.path / 'energy_uj'}: {e}") from e
    return zones


class RaplSensor(Sensor):
    """CPU package (+ DRAM) energy over a window from RAPL counters."""

    method = "rapl"

    def __init__(self, zones: list[Zone], *, clock: Callable[[], float] = time.perf_counter):
        self._zones = zones
        self._clock = clock
        self._sampler: Sampler | None = None
        self._rows: list[dict[str, Any]] = []
        self._t0 = 0.0
        self.reason = None

    @property
    def devices(self) -> list[str]:
        """The RAPL domains measured (package-N, dram-N)."""
        return [z.key for z in self._zones]

    def _record(self, tick: int, zone: Zone, now: float, delta_uj: int | None) -> None:
        power = None
        if delta_uj is not None:
            zone.pending_uj += delta_uj
            dt = now - zone.last_t
            if dt >= MIN_POWER_INTERVAL_S:
                power = zone.pending_uj / 1e6 / dt
                zone.pending_uj = 0
                zone.last_t = now
        self._rows.append(
            {
                "tick": tick,
                "t_s": now - self._t0,
                "device": zone.key,
                "power_w": power,
                "energy_j": zone.total_uj / 1e6 if zone.broken is None else None,
            }
        )

    def _sample(self, tick: int) -> None:
        for zone in self._zones:
            if zone.broken is not None:
                continue
            try:
                value = zone.read_uj()
            except (OSError, ValueError) as e:
                zone.broken = f"read failed: {e}"
                continue
            now = self._clock()
            self._record(tick, zone, now, zone.advance(value))

    def begin(self, interval_ms: int) -> None:
        """Read every zone's counter, then sample every ``interval_ms`` on a thread."""
        self._rows = []
        self._t0 = self._clock()
        for zone in self._zones:
            zone.total_uj = 0
            zone.pending_uj = 0
            zone.broken = None
            zone.last_uj = zone.read_uj()
            zone.last_t = self._t0
        self._sampler = Sampler(self._sample, interval_ms, clock=self._clock, name="rapl-sampler")
        self._sampler.start()

    def end(self) -> WindowReading:
        """Stop sampling, read the counters once more and return each domain's energy."""
        sampler = self._sampler
        if sampler is None:
            raise RuntimeError("end() called without begin()")
        tick = sampler.stop()
        self._sampler = None
        self._sample(tick)  # the closing edge read, on this thread after the sampler stopped
        end = self._clock()
        reading = WindowReading(
            method="rapl",
            duration_s=end - self._t0,
            energy_j={},
            start_s=self._t0,
            end_s=end,
            samples=list(self._rows),
            sampler_cpu_s=sampler.cpu_s,
            sampler_missed_ticks=sampler.missed_ticks,
        )
        if sampler.error is not None:
            reading.notes.append(f"the sampler stopped early: {sampler.error!r}")
        for zone in self._zones:
            if zone.broken is not None:
                reading.energy_j[zone.key] = None
                reading.notes.append(f"{zone.key}: energy unknown ({zone.broken})")
            elif zone.total_uj == 0:
                reading.energy_j[zone.key] = None
                reading.counter_stalled.append(zone.key)
                reading.notes.append(f"{zone.key}: the RAPL counter did not advance")
            else:
                reading.energy_j[zone.key] = zone.total_uj / 1e6
                reading.methods[zone.key] = "rapl"
                reading.readouts[zone.key] = "counter"
        if reading.total_energy_j is None:
            reading.method = "unavailable"
        return reading

    def provenance(self) -> dict[str, Any]:
        """The RAPL zones read and their counter ranges."""
        return {
            "sensor": "rapl",
            "method": self.method,
            "reason": None,
            "domains_note": "package (cores, caches, uncore) and dram where exposed; "
            "psys, core and uncore subzones are not added (they overlap)",
            "zones": [
                {"device": z.key, "name": z.name, "path": str(z.path),
                 "max_energy_range_uj": z.max_range_uj}
                for z in self._zones
            ],
        }

    def close(self) -> None:
        """Stop a running sampler."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


def open_rapl_sensor(root: Path = DEFAULT_POWERCAP_ROOT) -> Sensor:
    """A RAPL sensor for this machine's CPU packages, or an unavailable one with the reason."""
    try:
        return RaplSensor(find_zones(root))
    except NoRapl as e:
        return UnavailableSensor(str(e))
