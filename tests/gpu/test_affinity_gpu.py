"""CPUs local to a real GPU (issue 13): NVML's affinity mask agrees with the PCI device's sysfs
files (marker gpu; run on a GPU machine: pytest -m gpu)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.controller.placement import gpu_affinity
from harness.devices.affinity import sysfs_local_cpus
from harness.devices.host import HostGpus
from harness.results.schema import GpuLibrary

pytestmark = pytest.mark.gpu


@pytest.fixture
def host() -> Iterator[HostGpus]:
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    gpus = HostGpus.open(GpuLibrary())
    yield gpus
    gpus.close()


def test_gpu_0_has_local_cpus_and_sysfs_agrees(host: HostGpus) -> None:
    near = host.local_cpus([0])
    assert near, "NVML and sysfs both failed to say which CPUs are near GPU 0"
    assert set(near) <= set(range(os.cpu_count() or 1))
    nvml = host.nvml
    bus = nvml.nvmlDeviceGetPciInfo(nvml.nvmlDeviceGetHandleByIndex(0)).busId
    from_sysfs = sysfs_local_cpus(bus.decode() if isinstance(bus, bytes) else bus)
    if from_sysfs is not None:  # a container may hide /sys/bus/pci
        assert set(near) == set(from_sysfs)


def test_a_parallel_gpu_run_is_pinned_near_its_gpu(host: HostGpus) -> None:
    pinned, mems = gpu_affinity([0], GpuLibrary(), "cuda")
    assert pinned and set(pinned) <= os.sched_getaffinity(0)
    nodes = host.numa_nodes([0])
    if nodes is not None:  # a VM or container may not expose NUMA
        assert mems is None or set(mems) <= set(nodes)
