"""GPU settings an experiment asks for: a power limit and locked SM and memory clocks.

The host applies them to the run's GPUs before its container starts and restores the previous
values after it (``harness.controller.gpucontrol``; docs/gpu-control.md). They are part of an
experiment's id only when set, so studies that do not use them keep their ids.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.testing.simgpu.config import SimulatedGpus


class GpuSettings(BaseModel):
    """Power limit and locked clocks for the run's GPUs; None leaves a setting as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    power_limit_w: int | None = Field(
        None, gt=0, le=10_000, description="power limit of each of the run's GPUs, in watts")
    sm_clock_mhz: int | None = Field(
        None, gt=0, le=100_000, description="SM clock locked to this value (min = max), in MHz")
    memory_clock_mhz: int | None = Field(
        None, gt=0, le=100_000, description="memory clock locked to this value, in MHz")

    @property
    def any_set(self) -> bool:
        """Whether any setting is asked for."""
        return (self.power_limit_w, self.sm_clock_mhz, self.memory_clock_mhz) != (None, None, None)

    def described(self) -> str:
        """The settings asked for, as text (``power_limit_w=300, sm_clock_mhz=1410``)."""
        return ", ".join(f"{k}={v}" for k, v in self.model_dump().items() if v is not None)


def device_problem(settings: GpuSettings, device: str, simulated: SimulatedGpus | None) -> str | None:
    """Why ``gpu:`` settings cannot apply to a run on ``device`` (None when they can).

    They need GPUs: a cuda experiment, or any experiment of a study on simulated GPUs (whose
    runs each get simulated GPUs, as docs/simulated-gpu.md says).
    """
    if not settings.any_set or device == "cuda" or simulated is not None:
        return None
    return (f"gpu: {settings.described()} needs GPUs, but the experiment runs on device "
            f"{device}; drop the gpu: settings for it, or run on cuda (or on simulated GPUs: "
            "execution.simulated_gpus)")
