"""The headline metrics: one list used by the CLI table, the manifest, statistics, report and bundle.

Each metric names its column in the results table (``analysis.table``), a label with its unit,
how a value is formatted, and whether less is better. A metric is read from an
ExperimentResult by ``value``; unknown is None, never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness.results.schema import ExperimentResult


@dataclass(frozen=True)
class Metric:
    """One headline metric."""

    column: str
    label: str
    short: str
    spec: str
    better: Literal["lower", "higher"]
    read: Callable[[ExperimentResult], float | None]

    def value(self, result: ExperimentResult) -> float | None:
        """This metric of one result (None when unknown)."""
        return self.read(result)


HEADLINE: tuple[Metric, ...] = (
    Metric("j_per_output_token", "energy per output token (J)", "J/out-tok", ".4g", "lower",
           lambda r: r.energy.j_per_output_token),
    Metric("output_tokens_per_s", "throughput (output tokens/s)", "tok/s", ".1f", "higher",
           lambda r: r.throughput.output_tokens_per_s),
    Metric("e2e_p50_s", "end-to-end latency p50 (s)", "e2e p50 s", ".3f", "lower",
           lambda r: r.latency.e2e.p50_s),
    Metric("e2e_p90_s", "end-to-end latency p90 (s)", "e2e p90 s", ".3f", "lower",
           lambda r: r.latency.e2e.p90_s),
    Metric("ttft_p50_s", "time to first token p50 (s)", "TTFT p50 s", ".4f", "lower",
           lambda r: r.latency.ttft.p50_s),
    Metric("mean_power_w", "mean power (W)", "power W", ".1f", "lower",
           lambda r: r.energy.mean_power_w),
)

BY_COLUMN: dict[str, Metric] = {m.column: m for m in HEADLINE}

#: the metrics summarised per experiment over its cycles (statistics, report, bundle compare)
SUMMARISED: tuple[Metric, ...] = tuple(
    BY_COLUMN[c] for c in
    ("j_per_output_token", "output_tokens_per_s", "e2e_p50_s", "e2e_p90_s", "mean_power_w")
)
#: the metrics whose main effects are ranked (report, CLI)
EFFECTS: tuple[Metric, ...] = tuple(
    BY_COLUMN[c] for c in ("j_per_output_token", "output_tokens_per_s", "e2e_p90_s")
)
#: the figures shown per run as it finishes and kept in the manifest
PER_RUN: tuple[Metric, ...] = tuple(
    BY_COLUMN[c] for c in ("output_tokens_per_s", "j_per_output_token", "e2e_p50_s", "ttft_p50_s")
)


def headline(result: ExperimentResult) -> dict[str, float | None]:
    """The per-run figures of a result, keyed by column (kept in the manifest)."""
    return {m.column: m.value(result) for m in PER_RUN}
