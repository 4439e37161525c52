"""Serving mode's settings: the load, the requests' lengths and prompts, the latency objectives.

``mode: serving`` measures an engine's OpenAI-compatible server under load instead of offline
batches (docs/serving.md). These models are plain data: drawing lengths and arrival times from
them is the agent's job (``harness.agent.serving.requests``).
"""

from __future__ import annotations

import math
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Mode = Literal["offline", "serving"]
Distribution = Literal["fixed", "uniform", "lognormal"]
#: a lognormal length is cut at its median x exp(LOGNORMAL_CUT_SIGMAS x sigma): the top 0.13 %
LOGNORMAL_CUT_SIGMAS = 3.0
#: what a file of requests may be: JSONL of {"prompt", "output_tokens"} or ShareGPT's JSON
REQUEST_FILE_SUFFIXES = (".jsonl", ".json")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lengths(_Strict):
    """How synthetic requests' token lengths vary around the workload's length ``L``."""

    distribution: Distribution = Field(
        "fixed", description="fixed: L; uniform: whole numbers in [L(1-spread), L(1+spread)]; "
        "lognormal: median L, sigma spread, cut at L exp(3 spread)")
    spread: float = Field(0.5, gt=0, le=3, description="uniform: range ratio; lognormal: sigma")

    @model_validator(mode="after")
    def _uniform_stays_positive(self) -> Self:
        if self.distribution == "uniform" and self.spread >= 1:
            raise ValueError("a uniform spread must be below 1 (lengths L(1-spread) .. L(1+spread))")
        return self

    def bounds(self, center: int) -> tuple[int, int]:
        """The shortest and longest length this distribution draws around ``center``."""
        if self.distribution == "fixed":
            return center, center
        if self.distribution == "uniform":
            return max(1, math.floor(center * (1 - self.spread))), math.ceil(center * (1 + self.spread))
        return 1, max(1, math.ceil(center * math.exp(LOGNORMAL_CUT_SIGMAS * self.spread)))


class Serving(_Strict):
    """The load a served engine is measured under, and the requests it is sent."""

    request_rate: float | None = Field(
        None, gt=0, le=1_000_000,
        description="requests/s (open loop); unset: every request at once, or the closed loop "
        "of concurrency")
    arrival: Literal["poisson", "gamma"] = Field(
        "poisson", description="inter-arrival times: exponential, or gamma of shape burstiness")
    burstiness: float = Field(
        1.0, gt=0, le=100, description="gamma's shape: below 1 burstier, above 1 more regular")
    concurrency: int | None = Field(
        None, ge=1, le=100_000,
        description="requests in flight: a closed loop, or a cap on the open loop's")
    num_requests: int = Field(256, ge=1, le=1_000_000)
    duration_s: float | None = Field(
        None, gt=0, le=86_400, description="no request is sent after this long")
    dataset: str = Field(
        "synthetic", description="synthetic | FILE.jsonl ({\"prompt\", \"output_tokens\"} per "
        "line) | FILE.json (ShareGPT conversations)")
    input_length: Lengths = Lengths()
    output_length: Lengths = Lengths()
    warmup_requests: int = Field(8, ge=0, le=100_000, description="sent before the baselines' end")
    ready_timeout_s: float = Field(900.0, gt=0, le=86_400, description="server start to /health")
    request_timeout_s: float = Field(600.0, gt=0, le=86_400, description="one request, at most")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.arrival == "poisson" and self.burstiness != 1.0:
            raise ValueError("burstiness shapes gamma arrivals; set arrival: gamma (Poisson is "
                             "burstiness 1)")
        if self.arrival == "gamma" and self.request_rate is None:
            raise ValueError("arrival: gamma needs a request_rate")
        if self.dataset != "synthetic":
            if not self.dataset.endswith(REQUEST_FILE_SUFFIXES):
                raise ValueError("dataset: expected 'synthetic', a .jsonl file of "
                                 "{\"prompt\", \"output_tokens\"} lines or a ShareGPT .json file")
            varied = [n for n in ("input_length", "output_length")
                      if getattr(self, n).distribution != "fixed"]
            if varied:
                raise ValueError(f"{' and '.join(varied)} shape synthetic requests; a requests "
                                 "file gives each request's lengths")
        return self

    def load_text(self) -> str:
        """How the load is sent, in words: "8 requests/s", "a closed loop of 4", ..."""
        if self.request_rate is None:
            return (f"a closed loop of {self.concurrency}" if self.concurrency
                    else "every request at once")
        shape = f" (gamma, burstiness {self.burstiness:g})" if self.arrival == "gamma" else ""
        cap = f", at most {self.concurrency} in flight" if self.concurrency else ""
        return f"{self.request_rate:g} requests/s{shape}{cap}"


class Slo(_Strict):
    """Latency objectives a request must meet to count in goodput (unset: not checked)."""

    ttft_s: float | None = Field(None, gt=0, description="time to first token, at most")
    tpot_s: float | None = Field(None, gt=0, description="time per output token, at most")

    @property
    def given(self) -> bool:
        """Whether any objective is set."""
        return self.ttft_s is not None or self.tpot_s is not None
