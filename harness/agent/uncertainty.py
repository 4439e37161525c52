"""Uncertainty budgets of the energy figures (docs/methodology.md, section 2.5).

A budget lists standard uncertainties (GUM: a bound's half-width over sqrt(3) for a
rectangular distribution) in the figure's unit. Random terms add in quadrature; the
systematic term, the sensor's stated accuracy, is a gain error of each device's sensor, so it
is proportional to the figure (also to a difference such as dynamic energy) and adds linearly
across devices. The expanded uncertainty is ``COVERAGE_FACTOR`` x the combined standard
uncertainty (about 95 % coverage; the rectangular terms make it a bound in practice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.agent.metrics import known
from harness.agent.readings import Halves, counter_period_s, power_range_w
from harness.agent.sensors.base import WindowReading
from harness.results.energy import Uncertainty, UncertaintyTerm

COVERAGE_FACTOR = 2.0
SQRT3 = math.sqrt(3.0)
#: NVIDIA's NVML reference: nvmlDeviceGetPowerUsage "is accurate to within +/- 5% of current
#: power draw" (stated for Fermi and Kepler; nothing is stated for later GPUs or for the energy
#: counter, which is taken to share it); applied as a rectangular gain error
SENSOR_ACCURACY = 0.05
#: the counter's update period when the samples cannot show it (s): NVML 20-100 ms on recent
#: GPUs (PETSc manual, PetscLogGpuEnergyMeter), so the upper end; RAPL about 1 ms (Khan et al. 2018)
DEFAULT_COUNTER_PERIOD_S = 0.1
RAPL_COUNTER_PERIOD_S = 0.001
#: NVML power readings are averages over the last second on Ampere (except GA100) and newer
POWER_AVERAGING_S = 1.0
#: share of time the power sensor sees on A100 and H100 (Yang et al. 2023); assumed elsewhere
SENSOR_COVERAGE = 0.25

ACCURACY = "sensor_accuracy"
#: terms set by what happens at a window's edges, shared by all its devices (added linearly)
EDGE_TERMS = frozenset({"counter_resolution", "sampling_averaging", "window_coverage"})


@dataclass
class Budget:
    """A figure's value and its terms: random (quadrature) and systematic (linear)."""

    value: float
    random: dict[str, float] = field(default_factory=dict)
    systematic: dict[str, float] = field(default_factory=dict)

    def scaled(self, factor: float, value: float | None = None) -> Budget:
        """The budget of ``factor`` x this figure (or of ``value``, with terms x ``factor``)."""
        k = abs(factor)
        return Budget(
            self.value * factor if value is None else value,
            {n: u * k for n, u in self.random.items()},
            {n: u * k for n, u in self.systematic.items()},
        )

    def __add__(self, other: Budget) -> Budget:
        """The budget of a sum of figures (devices) with independent random terms.

        Edge terms (``EDGE_TERMS``) arise at the same instants on every device of a window and
        move them the same way when the load changes at an edge, so they add linearly.
        """
        random = dict(self.random)
        for name, u in other.random.items():
            if name in EDGE_TERMS:
                random[name] = random.get(name, 0.0) + u
            else:
                random[name] = math.hypot(random.get(name, 0.0), u)
        systematic = dict(self.systematic)
        for name, u in other.systematic.items():
            systematic[name] = systematic.get(name, 0.0) + u
        return Budget(self.value + other.value, random, systematic)

    def gain(self) -> Budget:
        """This budget with the sensor's gain error taken on its own value."""
        return Budget(self.value, dict(self.random),
                      {ACCURACY: SENSOR_ACCURACY / SQRT3 * abs(self.value)})

    def random_standard(self) -> float:
        """The random terms combined (one standard uncertainty)."""
        return math.sqrt(sum(u * u for u in self.random.values()))

    def to_schema(self) -> Uncertainty:
        """The budget as reported in result.json."""
        terms = [UncertaintyTerm(name=n, standard=u) for n, u in sorted(self.random.items())]
        terms += [UncertaintyTerm(name=n, standard=u, systematic=True)
                  for n, u in sorted(self.systematic.items())]
        combined = math.sqrt(sum(t.standard ** 2 for t in terms))
        expanded = COVERAGE_FACTOR * combined
        return Uncertainty(
            expanded=expanded,
            coverage_factor=COVERAGE_FACTOR,
            relative=expanded / abs(self.value) if self.value else None,
            expanded_random=COVERAGE_FACTOR * self.random_standard(),
            dominant=max(terms, key=lambda t: t.standard).name if terms else "none",
            terms=terms,
        )


def total(budgets: list[Budget]) -> Budget | None:
    """The budget of the sum over devices (None for no devices)."""
    if not budgets:
        return None
    out = budgets[0]
    for b in budgets[1:]:
        out = out + b
    return out


def reads_counter(reading: WindowReading, dev: str) -> bool:
    """Whether a device's energy differences a counter (not integrated power readings).

    The readout says so whatever the method is called (``simulated`` names no readout);
    readings without one fall back on the method's name.
    """
    readout = reading.readouts.get(dev)
    if readout is not None:
        return readout == "counter"
    method = reading.methods.get(dev, reading.method)
    return method is not None and "integration" not in method and method != "unavailable"


def energy_budget(reading: WindowReading, dev: str, excess_s: float = 0.0) -> Budget | None:
    """Budget of one device's energy over one window (None when its energy is unknown).

    ``excess_s``: how much longer the reading's window is than the window its energy stands
    for (the host's window around the GPUs'); that time at up to the device's highest power
    is the half-width of ``window_coverage``.
    """
    energy = reading.energy_j.get(dev)
    if energy is None:
        return None
    rows = reading.device_samples(dev)
    method = reading.methods.get(dev, reading.method)
    duration = reading.duration_s
    mean_w = energy / duration if duration > 0 else 0.0
    edge_w = max([mean_w, *known(rows, "power_w")])
    if reads_counter(reading, dev):
        period = counter_period_s(rows) or (
            RAPL_COUNTER_PERIOD_S if method == "rapl" else DEFAULT_COUNTER_PERIOD_S
        )
        # each edge reads a counter up to one update stale: rectangular, half-width P x period
        random = {"counter_resolution": edge_w * period / SQRT3 * math.sqrt(2.0)}
    else:
        random = integration_terms(rows, duration)
    edges = reading.edge_uncertainty_j.get(dev)
    if edges:  # edges between counter reads, interpolated (rectangular, half-width as recorded)
        random["window_edges"] = edges / SQRT3
    if excess_s > 0:
        random["window_coverage"] = edge_w * excess_s / SQRT3
    return Budget(energy, random).gain()


def beside(main: Budget, other: Budget, prefix: str) -> Budget:
    """The budget of ``main + other`` where ``other`` was read by an independent sensor.

    Nothing is shared between the two sensors (not the edges, not the gain error), so every
    term adds in quadrature: ``other``'s terms keep their names behind ``prefix``.
    """
    return Budget(
        main.value + other.value,
        {**main.random, **{f"{prefix}_{n}": u for n, u in other.random.items()}},
        {**main.systematic, **{f"{prefix}_{n}": u for n, u in other.systematic.items()}},
    )


def integration_terms(rows: list[dict[str, Any]], duration_s: float) -> dict[str, float]:
    """Terms of energy integrated from power readings: interval, averaging, part-time sensor."""
    points = sorted((float(r["t_s"]), float(r["power_w"])) for r in rows
                    if r.get("power_w") is not None and r.get("t_s") is not None)
    interval = sum(abs(p1 - p0) * (t1 - t0) / 2
                   for (t0, p0), (t1, p1) in zip(points, points[1:], strict=False))
    span = power_range_w(rows)
    peak = span[1] if span else 0.0
    spread = span[1] - span[0] if span else 0.0
    return {
        "sampling_interval": interval / SQRT3,
        "sampling_averaging": POWER_AVERAGING_S / 2 * peak / SQRT3,
        "sampling_part_time": (1 - SENSOR_COVERAGE) * spread * duration_s / 2 / SQRT3,
    }


def power_budget(window: Budget, duration_s: float, drift: Halves | None = None) -> Budget:
    """Budget of a mean power (energy over time), with the window's drift when it is a baseline.

    A baseline stands for the power of later windows; how much its two halves differ is taken
    as the half-width of a rectangular term (``baseline_drift``).
    """
    power = window.scaled(1.0 / duration_s)
    if drift is not None:
        power.random["baseline_drift"] = abs(drift.second_w - drift.first_w) / SQRT3
    return power


def above_baseline(energy: Budget, baseline_w: Budget, duration_s: float) -> Budget:
    """Budget of ``energy - baseline power x duration`` (the gain error taken on the result)."""
    value = energy.value - baseline_w.value * duration_s
    random = dict(energy.random)
    random["baseline"] = math.hypot(random.get("baseline", 0.0),
                                    baseline_w.random_standard() * abs(duration_s))
    return Budget(value, random).gain()


def peak_budget(samples: list[dict[str, Any]], devices: list[str], peak_w: float) -> Budget:
    """Budget of the peak summed power reading: accuracy, and what the sampler may have missed.

    A reading between two ticks can exceed both by up to their difference, so the largest
    change of the summed power between consecutive ticks is the half-width of the term.
    """
    by_tick: dict[int, dict[str, float]] = {}
    for s in samples:
        if s.get("power_w") is not None and s.get("tick") is not None:
            by_tick.setdefault(int(s["tick"]), {})[str(s["device"])] = float(s["power_w"])
    totals = [sum(p.values()) for _, p in sorted(by_tick.items()) if set(devices) <= set(p)]
    jump = max((abs(b - a) for a, b in zip(totals, totals[1:], strict=False)), default=0.0)
    return Budget(peak_w, {"sampling_interval": jump / SQRT3}).gain()


def reported(budgets: dict[str, Budget | None]) -> dict[str, Uncertainty]:
    """The known budgets by figure name, as reported."""
    return {name: b.to_schema() for name, b in budgets.items() if b is not None}
