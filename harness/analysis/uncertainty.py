"""Uncertainty of an experiment's mean over its cycles: the runs' budgets and their scatter.

Each run states an expanded uncertainty (k = 2, about 95 %) for its energy figures, split into
a random part (counter resolution, sampling, baseline: independent from run to run) and a
systematic part (the sensor's stated accuracy: a gain error of the same boards, shared by
every run on them). Over n runs of one experiment (GUM, JCGM 100:2008, sections 4.2 and 5.1:
https://www.bipm.org/documents/20126/2071204/JCGM_100_2008_E.pdf):

- the scatter of the runs (Type A) already holds each run's random measurement error, so the
  random part of the mean is the larger of the t-interval half-width ``t(0.975, n-1) s/sqrt(n)``
  and the runs' own random budgets averaged down (``rms(U_random)/sqrt(n)``, the floor when n
  is small or the runs agree better than their budgets allow);
- the systematic part does not average down: the mean of the runs' systematic parts;
- the two add in quadrature: ``U95(mean) = sqrt(random^2 + systematic^2)``.

The dominant term is named: ``run_to_run``, ``measurement_random`` or ``sensor_accuracy``.
A comparison between configurations measured on the same GPUs may leave the shared
systematic part out (``u95_random``), since a gain error scales both alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as sps

from harness.results.energy import Uncertainty
from harness.results.schema import ExperimentResult

#: result figures that carry a budget: table column -> (result part, field); a part may be a
#: dotted path (``energy.host``), and a part that is null (no host part) gives no budget
BUDGETED: dict[str, tuple[str, str]] = {
    "energy_j": ("energy", "energy_j"),
    "total_energy_j": ("energy", "total_energy_j"),
    "host_energy_j": ("energy.host", "energy_j"),
    "cpu_energy_j": ("energy.host", "cpu_energy_j"),
    "dram_energy_j": ("energy.host", "dram_energy_j"),
    "dynamic_energy_j": ("energy", "dynamic_energy_j"),
    "mean_power_w": ("energy", "mean_power_w"),
    "peak_power_w": ("energy", "peak_power_w"),
    "j_per_output_token": ("energy", "j_per_output_token"),
    "j_per_token": ("energy", "j_per_token"),
    "j_per_request": ("energy", "j_per_request"),
    "wh_per_1k_requests": ("energy", "wh_per_1k_requests"),
    "output_tokens_per_j": ("energy", "output_tokens_per_j"),
    "idle_power_w": ("energy", "idle_power_w"),
    "loaded_idle_power_w": ("energy", "loaded_idle_power_w"),
    "prefill_energy_j": ("prefill", "prefill_energy_j"),
    "decode_energy_j": ("prefill", "decode_energy_j"),
}


def budget_of(result: ExperimentResult, column: str) -> Uncertainty | None:
    """The budget a result states for a table column (None when it states none)."""
    part, name = BUDGETED[column]
    owner: Any = result
    for attr in part.split("."):
        owner = getattr(owner, attr)
        if owner is None:
            return None
    budgets: dict[str, Uncertainty] = owner.uncertainty
    return budgets.get(name)


def budget_columns(result: ExperimentResult) -> dict[str, Any]:
    """Per budgeted figure: its expanded uncertainty, the random part of it, and its dominant term."""
    row: dict[str, Any] = {}
    for column in BUDGETED:
        u = budget_of(result, column)
        row[f"{column}_u95"] = u.expanded if u else None
        row[f"{column}_u95_random"] = u.expanded_random if u else None
        row[f"{column}_u_dominant"] = u.dominant if u else None
    return row


@dataclass(frozen=True)
class MeanUncertainty:
    """The expanded uncertainty (about 95 %) of a mean over runs, and what dominates it."""

    u95: float
    u95_random: float
    dominant: str


def _known(values: Sequence[Any]) -> list[float]:
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if not math.isnan(f):
            out.append(f)
    return out


def mean_uncertainty(
    values: Sequence[Any], u95: Sequence[Any], u95_random: Sequence[Any]
) -> MeanUncertainty | None:
    """Combine the runs' budgets with their scatter (module docstring); None without budgets.

    The three sequences are aligned per run; runs without a value or a budget are left out.
    """
    rows = [(v, u, r) for v, u, r in zip(values, u95, u95_random, strict=True)
            if _known([v]) and _known([u]) and _known([r])]
    if not rows:
        return None
    x = [float(v) for v, _, _ in rows]
    n = len(x)
    random_i = [float(r) for _, _, r in rows]
    systematic_i = [math.sqrt(max(float(u) ** 2 - float(r) ** 2, 0.0)) for _, u, r in rows]
    floor = math.sqrt(sum(r * r for r in random_i) / n) / math.sqrt(n)
    scatter = math.nan
    if n >= 2:
        mean = sum(x) / n
        s = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
        scatter = float(sps.t.ppf(0.975, n - 1)) * s / math.sqrt(n)
    random = floor if math.isnan(scatter) else max(scatter, floor)
    systematic = sum(systematic_i) / n
    parts = {
        "run_to_run": scatter if not math.isnan(scatter) else 0.0,
        "measurement_random": floor,
        "sensor_accuracy": systematic,
    }
    return MeanUncertainty(
        u95=math.hypot(random, systematic),
        u95_random=random,
        dominant=max(parts, key=lambda k: parts[k]),
    )
