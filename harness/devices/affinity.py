"""Which CPUs and memory nodes are local to a GPU: NVML's affinity masks, or sysfs.

NVML answers ``nvmlDeviceGetCpuAffinity`` (and ``nvmlDeviceGetMemoryAffinity`` for NUMA nodes)
with an array of 64-bit words (bit i of word j is member 64 j + i); Linux says the same in
``/sys/bus/pci/devices/<bus id>/local_cpulist`` and ``numa_node``. Both are read here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: where Linux lists PCI devices
PCI_DEVICES = Path("/sys/bus/pci/devices")
#: 64-bit words asked of NVML: room for 4096 CPUs
MASK_WORDS = 64


def host_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), sorted."""
    return sorted(os.sched_getaffinity(0))


def host_numa_nodes(root: Path = Path("/sys/devices/system/node")) -> list[int] | None:
    """The host's online NUMA nodes, None where Linux does not say."""
    try:
        return parse_cpulist((root / "online").read_text(encoding="ascii")) or None
    except (OSError, ValueError):
        return None


def parse_cpulist(text: str) -> list[int]:
    """CPUs of a Linux cpu list such as ``0-3,8,10-11`` (sorted; empty text: none)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        low, high = int(first), int(last or first)
        if high < low:
            raise ValueError(f"cpu list range {part!r} runs backwards")
        cpus.update(range(low, high + 1))
    return sorted(cpus)


def format_cpulist(cpus: Iterable[int]) -> str:
    """The Linux cpu list of ``cpus`` (ranges joined: ``0-3,8``), as cpuset and taskset take it."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def mask_bits(words: Iterable[int], bits: int = 64) -> list[int]:
    """Members (CPUs, NUMA nodes) set in an NVML mask of ``bits``-bit words, lowest first."""
    cpus = []
    for j, word in enumerate(words):
        value = int(word)
        for i in range(bits):
            if value >> i & 1:
                cpus.append(j * bits + i)
    return cpus


def sysfs_bus_id(nvml_bus_id: str) -> str:
    """NVML's PCI bus id (``00000000:3B:00.0``) as sysfs names it (``0000:3b:00.0``)."""
    domain, _, rest = nvml_bus_id.strip().partition(":")
    return f"{int(domain, 16):04x}:{rest.lower()}"


def sysfs_local_cpus(bus_id: str, root: Path = PCI_DEVICES) -> list[int] | None:
    """CPUs local to the PCI device ``bus_id`` (NVML's spelling), None where sysfs does not say."""
    try:
        text = (root / sysfs_bus_id(bus_id) / "local_cpulist").read_text(encoding="ascii")
        return parse_cpulist(text) or None
    except (OSError, ValueError):
        return None


def sysfs_numa_node(bus_id: str, root: Path = PCI_DEVICES) -> int | None:
    """The NUMA node of the PCI device ``bus_id``, None where sysfs does not say (or -1)."""
    try:
        node = int((root / sysfs_bus_id(bus_id) / "numa_node").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None
