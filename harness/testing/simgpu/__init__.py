"""Simulated NVIDIA GPUs: an NVML library whose power follows the engine, and its truth.

- ``config.SimulatedGpus``: what the GPUs are like (power per engine state, sensors, limits);
- ``nvml.SimulatedNvml``: pynvml's interface over them (chosen by ``harness.devices``);
- ``truth``: what they really drew, written at nvmlShutdown, for tests to compare against.

Only the configuration is imported here (result and study models use it); the library and the
truth reader are imported from their modules. docs/simulated-gpu.md describes the model.
"""

from harness.testing.simgpu.config import SimulatedGpus, StatePower

__all__ = ["SimulatedGpus", "StatePower"]
