"""What the simulated GPUs really drew: written at nvmlShutdown, read back by tests.

The truth file holds, per device, the true power as constant segments on the
``time.perf_counter()`` clock (CLOCK_MONOTONIC on Linux: one clock for every process and
container of a machine), the engine states it went through and when, and the configuration.
Every figure of a result measured on simulated GPUs can be compared with the truth over the
same interval: ``result.energy.phase_edges_s`` holds each phase's sensor window edges on that
clock, and ``environment.sensor.devices`` maps each measured device (gpu0, ...) to its UUID.

    truth = read_truth(run_dir / TRUTH_FILE)
    uuid = result.environment["sensor"]["devices"][0]["uuid"]
    t0, t1 = result.energy.phase_edges_s["window"]
    energy_between(truth, uuid, t0, t1)   # joules, exact

The truth is the true power; readings carry ``sensor_bias`` on top of it.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.testing.simgpu.config import SimulatedGpus

#: the truth file's name in a run folder
TRUTH_FILE = "simulated-gpu-truth.json"
FORMAT = "harness.simgpu.truth/1"


@dataclass(frozen=True)
class DeviceTruth:
    """One device's true power segments ``(start_s, end_s, power_w)`` and its states."""

    index: int
    uuid: str
    follows_engine: bool
    segments: tuple[tuple[float, float, float], ...]
    states: tuple[tuple[float, str], ...]

    @property
    def start_s(self) -> float:
        """Start of the recorded interval."""
        return self.segments[0][0]

    @property
    def end_s(self) -> float:
        """End of the recorded interval (the last nvmlShutdown)."""
        return self.segments[-1][1]

    def _check(self, t0: float, t1: float) -> None:
        if t1 < t0:
            raise ValueError(f"interval ends before it starts ({t0} > {t1})")
        if t0 < self.start_s or t1 > self.end_s:
            raise ValueError(
                f"[{t0:.6f}, {t1:.6f}] is outside the recorded truth "
                f"[{self.start_s:.6f}, {self.end_s:.6f}] of device {self.index}"
            )

    def energy_between(self, t0: float, t1: float) -> float:
        """True energy from ``t0`` to ``t1`` (perf_counter seconds), in joules."""
        self._check(t0, t1)
        return sum(p * (min(b, t1) - max(a, t0)) for a, b, p in self.segments if b > t0 and a < t1)

    def mean_power_w(self, t0: float, t1: float) -> float:
        """True mean power from ``t0`` to ``t1``."""
        if t1 <= t0:
            raise ValueError("an empty interval has no mean power")
        return self.energy_between(t0, t1) / (t1 - t0)

    def power_at(self, t: float) -> float:
        """True power at ``t``."""
        self._check(t, t)
        starts = [a for a, _, _ in self.segments]
        return self.segments[max(bisect.bisect_right(starts, t) - 1, 0)][2]

    def peak_power_w(self, t0: float, t1: float) -> float:
        """Highest true power within ``[t0, t1]``."""
        self._check(t0, t1)
        return max(p for a, b, p in self.segments if b > t0 and a <= t1)

    def state_intervals(self, t0: float, t1: float) -> list[tuple[float, float, str]]:
        """``(start, end, state)`` pieces covering ``[t0, t1]``."""
        self._check(t0, t1)
        out = []
        for i, (start, state) in enumerate(self.states):
            end = self.states[i + 1][0] if i + 1 < len(self.states) else self.end_s
            a, b = max(start, t0), min(end, t1)
            if b > a:
                out.append((a, b, state))
        return out

    def energy_by_state(self, t0: float, t1: float) -> dict[str, float]:
        """True energy from ``t0`` to ``t1`` split by the engine state it was drawn in."""
        out: dict[str, float] = {}
        for a, b, state in self.state_intervals(t0, t1):
            out[state] = out.get(state, 0.0) + self.energy_between(a, b)
        return out


@dataclass(frozen=True)
class Truth:
    """Everything the simulated GPUs of one agent process drew."""

    config: SimulatedGpus
    pid: int
    created_s: float
    closed_s: float
    devices: tuple[DeviceTruth, ...]

    def device(self, key: int | str) -> DeviceTruth:
        """A device by NVML index or UUID (a unique UUID prefix will do)."""
        if isinstance(key, int):
            return self.devices[key]
        found = [d for d in self.devices if d.uuid == key or d.uuid.startswith(key)]
        if len(found) != 1:
            raise KeyError(f"no single simulated device matches {key!r}")
        return found[0]


def truth_data(
    config: SimulatedGpus, pid: int, created_s: float, closed_s: float,
    devices: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The JSON form of a truth file."""
    return {
        "format": FORMAT,
        "clock": "time.perf_counter (CLOCK_MONOTONIC), seconds",
        "pid": pid,
        "created_s": created_s,
        "closed_s": closed_s,
        "config": config.model_dump(mode="json"),
        "devices": list(devices),
    }


def read_truth(path: Path) -> Truth:
    """Read a truth file written by the simulated GPUs."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a simulated-GPU truth file ({data.get('format')!r})")
    devices = tuple(
        DeviceTruth(
            index=int(d["index"]),
            uuid=str(d["uuid"]),
            follows_engine=bool(d["follows_engine"]),
            segments=tuple((float(a), float(b), float(p)) for a, b, p in d["segments"]),
            states=tuple((float(t), str(s)) for t, s in d["states"]),
        )
        for d in data["devices"]
    )
    return Truth(
        config=SimulatedGpus.model_validate(data["config"]),
        pid=int(data["pid"]),
        created_s=float(data["created_s"]),
        closed_s=float(data["closed_s"]),
        devices=devices,
    )


def energy_between(truth: Truth, device: int | str, t0: float, t1: float) -> float:
    """True energy of one device (index or UUID) from ``t0`` to ``t1``, in joules."""
    return truth.device(device).energy_between(t0, t1)


def mean_power_w(truth: Truth, device: int | str, t0: float, t1: float) -> float:
    """True mean power of one device from ``t0`` to ``t1``."""
    return truth.device(device).mean_power_w(t0, t1)


def total_energy_between(truth: Truth, devices: Sequence[int | str], t0: float, t1: float) -> float:
    """True energy of several devices from ``t0`` to ``t1``, summed."""
    return sum(energy_between(truth, d, t0, t1) for d in devices)


def measured_uuids(result: Any) -> dict[str, str]:
    """A result's measured devices (gpu0, ...) and their UUIDs, from its sensor record."""
    sensor = result.environment.get("sensor") or {}
    return {d["device"]: d["uuid"] for d in sensor.get("devices") or [] if "uuid" in d}


def phase_energy(truth: Truth, result: Any, phase: str = "window") -> float:
    """True energy of a result's measured GPUs over one phase's sensor window."""
    t0, t1 = result.energy.phase_edges_s[phase]
    return total_energy_between(truth, list(measured_uuids(result).values()), t0, t1)
