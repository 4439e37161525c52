"""Serving mode's part of a result: the load, its steady window and goodput (docs/serving.md)."""

from __future__ import annotations

from pydantic import Field

from harness.results.base import ResultModel
from harness.results.energy import Uncertainty


class ServingResult(ResultModel):
    """Serving mode: the load as sent and served, its steady window, goodput (docs/serving.md)."""

    requests_planned: int = 0
    requests_ok: int = 0
    requests_failed: int = 0
    requests_not_sent: int = Field(default=0, description="due after serving.duration_s")
    target_request_rate: float | None = Field(default=None, description="requests/s")
    achieved_request_rate: float | None = Field(default=None, description="sent over sending span")
    send_lag_p99_s: float | None = Field(default=None, description="sent - due, open loop")
    send_lag_max_s: float | None = None
    concurrency: int | None = None
    load_s: float | None = Field(default=None, description="the whole load's sensor window")
    rule: str | None = None
    window_found: bool = False
    window_reason: str | None = None
    window_start_s: float | None = Field(default=None, description="from the load's start")
    window_end_s: float | None = None
    max_running_requests: int | None = Field(default=None, description="B of the rule")
    requests_finished_in_window: int = 0
    request_equivalents: float | None = Field(default=None, description="tokens / mean per request")
    throughput_first_half: float | None = Field(default=None, description="output tokens/s")
    throughput_second_half: float | None = None
    throughput_difference: float | None = Field(default=None, description="|second - first| / first")
    output_tokens_per_s_per_user: float | None = Field(default=None, description="mean of 1/TPOT")
    mean_running_requests: float | None = Field(default=None, description="engine's gauge, window")
    running_source: str | None = None
    mean_in_flight_requests: float | None = Field(default=None, description="client side, window")
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None
    slo_attainment: float | None = Field(default=None, description="share of requests meeting all")
    goodput_requests_per_s: float | None = None
    j_per_good_request: float | None = None
    client_cpu_s: float | None = Field(default=None, description="the load generator's thread")
    server_argv: list[str] = Field(default_factory=list)
    requests_sha256: str | None = None
    uncertainty: dict[str, Uncertainty] = Field(default_factory=dict)
