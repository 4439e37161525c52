"""GPU settings through the system's NVML on a real NVIDIA GPU (marker gpu: pytest -m gpu).

What the simulated-NVML tests cannot show: the real driver's constraints and clock lists are
read, an out-of-range value is refused at preflight, and, where this process may change
settings (root, and a driver that lets it), a power limit is set, read back, holds under load,
and is restored, as is a locked SM clock. Where it may not, the refusal is a clear preflight
error and the run fails with gpu_settings_failed, leaving the GPU untouched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.config.experiment import Experiment
from harness.config.gpu import GpuSettings
from harness.config.study import Execution
from harness.controller.gpucheck import gpu_problems
from harness.controller.gpucontrol import GpuControl
from harness.devices.host import HostGpus
from harness.devices.library import SYSTEM
from harness.errors import RunFailure
from harness.results.reasons import FailureReason

pytestmark = pytest.mark.gpu

BASE = {"model": "m", "backend": "pytorch", "device": "cuda", "precision": "bf16"}


@pytest.fixture(scope="module")
def host() -> Iterator[HostGpus]:
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    with HostGpus.open(SYSTEM) as h:
        yield h


def exp(**gpu: int) -> list[Experiment]:
    return [Experiment.model_validate({**BASE, "gpu": gpu})]


@dataclass
class BusyWindow:
    """NVML readings of GPU 0 taken while matrix products were running on it."""

    power_w: list[float]
    sm_clock_mhz: list[int]

    def settled(self, values: list[Any]) -> list[Any]:
        """The second half of a series: after clocks and power have settled under load."""
        return values[len(values) // 2:]

    def mean_power_w(self) -> float:
        """Mean power over the settled half."""
        tail = self.settled(self.power_w)
        return sum(tail) / len(tail)


def busy_window(host: HostGpus, seconds: float) -> BusyWindow:
    """Power and SM clock of GPU 0, each read while bf16 matrix products are still queued."""
    torch = pytest.importorskip("torch")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    handle = host.nvml.nvmlDeviceGetHandleByIndex(0)
    window = BusyWindow([], [])
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            a @ b
        # the 20 products run asynchronously: read before synchronising, so the GPU is busy
        window.power_w.append(host.nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        window.sm_clock_mhz.append(host.clock_mhz(0, "sm"))
        torch.cuda.synchronize()
    return window


def test_ranges_are_read_and_out_of_range_values_refused(host: HostGpus) -> None:
    low, high = host.power_limit_range_w(0)
    assert 0 < low < high
    assert host.sm_clocks_mhz(0) and host.memory_clocks_mhz(0)
    problems = gpu_problems(exp(power_limit_w=int(high) + 100), Execution(gpus=[0]), "gpu-test")
    assert any(f"outside the allowed range {low:g}-{high:g} W" in p for p in problems), problems


def test_power_limit_and_clock_lock_set_read_back_held_and_restored(host: HostGpus) -> None:
    low, high = host.power_limit_range_w(0)
    before = host.power_limit_w(0)
    target = int((low + high) / 2)
    sm = host.sm_clocks_mhz(0)
    lock = sm[len(sm) // 2]
    permission = gpu_problems(exp(power_limit_w=target), Execution(gpus=[0]), "gpu-test")
    control = GpuControl(SYSTEM)
    if permission:  # not root, or a driver that refuses: said at preflight, and the run fails
        assert "cannot be changed on GPU 0" in permission[0]
        with pytest.raises(RunFailure) as e:
            control.apply("gpu-test", GpuSettings(power_limit_w=target), [0])
        assert e.value.reason == FailureReason.GPU_SETTINGS_FAILED
        assert host.power_limit_w(0) == before
        return
    record = control.apply("gpu-test", GpuSettings(power_limit_w=target, sm_clock_mhz=lock), [0])
    try:
        assert record.gpus[0].applied.power_limit_w == pytest.approx(target, abs=1)
        assert host.enforced_power_limit_w(0) == pytest.approx(target, abs=1)
        busy = busy_window(host, 8.0)
        assert busy.mean_power_w() <= target * 1.05
        # sampled under load: an idle GPU's clock would pass this without any lock
        clocks = busy.settled(busy.sm_clock_mhz)
        assert len(clocks) >= 5, busy
        assert max(clocks) <= lock * 1.05, (lock, clocks)  # locked (or lower under the cap)
    finally:
        control.restore("gpu-test", record)
    assert record.restored is True, record.restore_error
    assert host.power_limit_w(0) == pytest.approx(before, abs=1)
