"""CPUs local to a GPU (issue 13): NVML's affinity mask, the PCI device's sysfs files, and the
simulated NVML's answer; a GPU run in parallel is pinned to them."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pynvml
import pytest

from harness.controller.placement import gpu_affinity
from harness.devices.affinity import (
    format_cpulist,
    mask_bits,
    parse_cpulist,
    sysfs_bus_id,
    sysfs_local_cpus,
    sysfs_numa_node,
)
from harness.devices.host import HostGpus
from harness.results.schema import GpuLibrary
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.nvml import SimulatedNvml


def test_cpu_lists_read_and_written() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []
    assert format_cpulist([11, 0, 1, 2, 3, 8, 10]) == "0-3,8,10-11"
    assert format_cpulist([5]) == "5"
    with pytest.raises(ValueError, match="backwards"):
        parse_cpulist("4-2")


def test_affinity_masks_are_64_bit_words() -> None:
    assert mask_bits([0b1011]) == [0, 1, 3]
    assert mask_bits([0, 1 << 2]) == [66]
    assert mask_bits([]) == []


def fake_sysfs(root: Path, bus: str, cpulist: str, node: str) -> Path:
    folder = root / bus
    folder.mkdir(parents=True)
    (folder / "local_cpulist").write_text(cpulist + "\n")
    (folder / "numa_node").write_text(node + "\n")
    return root


def test_sysfs_names_a_gpu_by_its_lower_case_bus_id(tmp_path) -> None:
    assert sysfs_bus_id("00000000:3B:00.0") == "0000:3b:00.0"
    root = fake_sysfs(tmp_path, "0000:3b:00.0", "24-47,72-95", "1")
    assert sysfs_local_cpus("00000000:3B:00.0", root) == [*range(24, 48), *range(72, 96)]
    assert sysfs_numa_node("00000000:3B:00.0", root) == 1
    assert sysfs_local_cpus("00000000:AF:00.0", root) is None  # not there: unknown
    fake_sysfs(tmp_path, "0000:af:00.0", "0-3", "-1")
    assert sysfs_numa_node("00000000:AF:00.0", root) is None  # -1: no NUMA information


def autospec_nvml() -> mock.MagicMock:
    nvml = mock.create_autospec(pynvml)
    nvml.NVMLError = pynvml.NVMLError
    nvml.nvmlDeviceGetHandleByIndex.side_effect = lambda i: f"h{i}"
    return nvml


def test_nvml_says_which_cpus_are_near_each_gpu() -> None:
    nvml = autospec_nvml()
    masks = {"h0": [0x0F], "h1": [0xF0]}
    nvml.nvmlDeviceGetCpuAffinity.side_effect = lambda h, size: masks[h]
    host = HostGpus(nvml)
    assert host.local_cpus([0]) == [0, 1, 2, 3]
    assert host.local_cpus([0, 1]) == list(range(8))  # two GPUs: the union
    assert nvml.nvmlDeviceGetCpuAffinity.call_args.args[1] >= 1  # words asked for


def test_sysfs_answers_where_nvml_does_not(tmp_path) -> None:
    nvml = autospec_nvml()
    nvml.nvmlDeviceGetCpuAffinity.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    info = pynvml.nvmlPciInfo_t()
    info.busId = b"00000000:3B:00.0"
    nvml.nvmlDeviceGetPciInfo.return_value = info
    root = fake_sysfs(tmp_path, "0000:3b:00.0", "4-7", "0")
    assert HostGpus(nvml).local_cpus([0], sysfs=root) == [4, 5, 6, 7]
    assert HostGpus(nvml).local_cpus([0], sysfs=tmp_path / "none") is None  # nobody says


def test_the_simulated_gpus_sit_on_the_hosts_cpus_in_order() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    sim = SimulatedNvml(SimulatedGpus(count=2))
    sim.nvmlInit()
    try:
        host = HostGpus(sim)
        first, second = host.local_cpus([0]), host.local_cpus([1])
    finally:
        sim.nvmlShutdown()
    assert first and second and set(first) | set(second) <= set(cpus)
    if len(cpus) >= 2:
        assert not set(first) & set(second)  # one half each
        assert first[0] == cpus[0]


def test_a_gpu_run_is_pinned_to_its_gpus_cpus_that_this_process_may_use(tmp_path,
                                                                        monkeypatch) -> None:
    from harness.controller import placement

    library = GpuLibrary(kind="simulated", simulated=SimulatedGpus(count=2),
                         state_dir=str(tmp_path / "state"))
    monkeypatch.setattr(placement, "host_numa_nodes", lambda: [0])
    near, mems = gpu_affinity([0], library, "cpu")
    assert near is not None and set(near) <= os.sched_getaffinity(0)
    assert mems == (0,)
    monkeypatch.setattr(placement, "host_numa_nodes", lambda: None)  # Linux does not say
    assert gpu_affinity([0], library, "cpu")[1] is None
    assert gpu_affinity([], library, "cpu") == (None, None)
    assert gpu_affinity([0], GpuLibrary(), "cpu") == (None, None)  # a CPU run measures no GPU


def test_nvml_and_sysfs_say_which_numa_node_a_gpu_is_on(tmp_path) -> None:
    nvml = autospec_nvml()
    nvml.NVML_AFFINITY_SCOPE_NODE = pynvml.NVML_AFFINITY_SCOPE_NODE
    nvml.nvmlDeviceGetMemoryAffinity.side_effect = lambda h, size, scope: {"h0": [0b10],
                                                                           "h1": [0b01]}[h]
    assert HostGpus(nvml).numa_nodes([0]) == [1]
    assert HostGpus(nvml).numa_nodes([0, 1]) == [0, 1]
    nvml.nvmlDeviceGetMemoryAffinity.side_effect = pynvml.NVMLError(
        pynvml.NVML_ERROR_NOT_SUPPORTED)
    info = pynvml.nvmlPciInfo_t()
    info.busId = b"00000000:3B:00.0"
    nvml.nvmlDeviceGetPciInfo.return_value = info
    root = fake_sysfs(tmp_path, "0000:3b:00.0", "24-47", "1")
    assert HostGpus(nvml).numa_nodes([0], sysfs=root) == [1]
    assert HostGpus(nvml).numa_nodes([0], sysfs=tmp_path / "none") is None


def test_host_numa_nodes_from_sysfs(tmp_path) -> None:
    from harness.devices.affinity import host_numa_nodes

    (tmp_path / "online").write_text("0-1\n")
    assert host_numa_nodes(tmp_path) == [0, 1]
    assert host_numa_nodes(tmp_path / "none") is None


def test_a_gpu_run_reaches_docker_with_its_memory_nodes(tmp_path) -> None:
    from harness.controller.runtimes.base import RunJob
    from harness.controller.runtimes.docker import DockerRuntime

    client = mock.MagicMock()
    run_dir = tmp_path / "s" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    job = RunJob(run_id="r1", study="s", run_dir=run_dir, image="img", model_host_path=None,
                 model_ref="org/model", hf_cache=None, gpus=[], device="cpu", timeout_s=10,
                 cpus=(24, 25), mems=(1,))
    DockerRuntime(client=client, cache_dir=tmp_path / "cache")._create(job)
    kwargs = client.containers.create.call_args.kwargs
    assert (kwargs["cpuset_cpus"], kwargs["cpuset_mems"]) == ("24-25", "1")
