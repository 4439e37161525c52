"""A device's true power over time: piecewise constant, integrated exactly.

The simulated GPU records each change of its true power; every reading it gives (the energy
counter, the averaged power) and the truth the tests compare against are integrals of this
one timeline, so the truth is known exactly, not estimated.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field


@dataclass
class Timeline:
    """Power steps ``(t_s, power_w)``: the power is ``power_w`` from ``t_s`` to the next step.

    Not thread-safe on its own: the device that owns it serialises steps and reads.
    """

    times: list[float] = field(default_factory=list)
    powers: list[float] = field(default_factory=list)
    #: running energy at each step, so integrals cost one bisection
    energy_at: list[float] = field(default_factory=list)

    def step(self, t_s: float, power_w: float) -> None:
        """From ``t_s`` on (never before the last step) the power is ``power_w``."""
        if self.times:
            if t_s < self.times[-1]:
                t_s = self.times[-1]
            if power_w == self.powers[-1]:
                return
            self.energy_at.append(self.energy(t_s))
        else:
            self.energy_at.append(0.0)
        self.times.append(t_s)
        self.powers.append(power_w)

    def power(self, t_s: float) -> float:
        """True power at ``t_s`` (the first step's power before it)."""
        if not self.times:
            return 0.0
        i = max(bisect.bisect_right(self.times, t_s) - 1, 0)
        return self.powers[i]

    def energy(self, t_s: float) -> float:
        """True energy from the first step to ``t_s``, in joules."""
        if not self.times or t_s <= self.times[0]:
            return 0.0
        i = bisect.bisect_right(self.times, t_s) - 1
        return self.energy_at[i] + self.powers[i] * (t_s - self.times[i])

    def between(self, t0: float, t1: float) -> float:
        """True energy from ``t0`` to ``t1``, in joules."""
        return self.energy(t1) - self.energy(t0)

    def observed_mean(
        self, t0: float, t1: float, period_s: float, duty: float, phase_s: float = 0.0
    ) -> float | None:
        """Mean power over the parts of ``[t0, t1]`` a part-time sensor sees.

        The sensor looks during the first ``duty`` share of every ``period_s``, periods starting
        at ``phase_s + k * period_s``; None when it saw nothing in the interval.
        """
        if t1 <= t0:
            return None
        if duty >= 1.0:
            return self.between(t0, t1) / (t1 - t0)
        seen = energy = 0.0
        k = math.floor((t0 - phase_s) / period_s)
        while phase_s + k * period_s < t1:
            start = phase_s + k * period_s
            a = max(t0, start)
            b = min(t1, start + duty * period_s)
            if b > a:
                seen += b - a
                energy += self.between(a, b)
            k += 1
        return energy / seen if seen > 0 else None

    def segments(self, t0: float, t1: float) -> list[tuple[float, float, float]]:
        """``(start, end, power_w)`` pieces covering ``[t0, t1]``."""
        out = []
        for i, start in enumerate(self.times):
            end = self.times[i + 1] if i + 1 < len(self.times) else math.inf
            a, b = max(start, t0), min(end, t1)
            if b > a:
                out.append((a, b, self.powers[i]))
        return out
