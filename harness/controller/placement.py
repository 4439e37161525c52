"""Where a run goes: exactly the GPUs its engine uses, from a pool over execution.gpus.

``Execution.gpus_per_run`` says how many (tensor x pipeline parallel; on simulated GPUs
``simulated_gpus.per_run``); a plan that needs more than ``execution.gpus`` lists is refused
when it is made (``Execution.placement_problem``). With ``execution.max_parallel`` N, up to N
runs are in flight at once, each on GPUs no other run in flight holds (``GpuPool``). Runs on
the CPU stand in for GPUs there: each slot gets its own CPU set (``cpu_sets``); a GPU run is
pinned to the CPUs local to its GPUs where the host says which (NVML or sysfs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.config.experiment import Experiment
from harness.config.study import Execution
from harness.devices.affinity import format_cpulist, host_cpus, host_numa_nodes
from harness.devices.host import GpusUnavailable, HostGpus
from harness.devices.library import measures_gpus
from harness.errors import UserInputError
from harness.results.schema import GpuLibrary

#: how often a run waiting for GPUs checks whether the study is stopping
POLL_S = 0.2


def assign_gpus(execution: Execution, experiment: Experiment) -> list[int]:
    """The host GPU indices (NVML order) a lone run of ``experiment`` gets: the first ones listed."""
    why = execution.placement_problem(experiment)
    if why is not None:
        raise UserInputError(why)
    return list(execution.gpus[: execution.gpus_per_run(experiment)])


class GpuPool:
    """Hands out disjoint GPUs of ``execution.gpus`` to runs in flight; thread-safe."""

    def __init__(self, gpus: Sequence[int]) -> None:
        self.gpus = list(gpus)
        self._free = set(self.gpus)
        self._cond = threading.Condition()

    def acquire(self, count: int, stopping: Callable[[], bool] = lambda: False) -> list[int] | None:
        """Take ``count`` free GPUs (first listed first), waiting until they are; None if stopping.

        Raises UserInputError when ``count`` exceeds what the pool lists (it would wait forever).
        """
        if count > len(self.gpus):
            raise UserInputError(f"a run needs {count} GPUs, but execution.gpus lists "
                                 f"{len(self.gpus)} ({self.gpus}); list at least {count}")
        with self._cond:
            while len(self._free) < count:
                if stopping():
                    return None
                self._cond.wait(POLL_S)
            taken = [g for g in self.gpus if g in self._free][:count]
            self._free.difference_update(taken)
            return taken

    def release(self, gpus: Sequence[int]) -> None:
        """Give GPUs back (a run ended, however it ended)."""
        with self._cond:
            self._free.update(g for g in gpus if g in self.gpus)
            self._cond.notify_all()

    def in_use(self) -> list[int]:
        """The GPUs runs in flight hold now."""
        with self._cond:
            return [g for g in self.gpus if g not in self._free]


def cpu_sets(cpus: Sequence[int], slots: int) -> list[tuple[int, ...]]:
    """``cpus`` split into up to ``slots`` disjoint, contiguous, even sets (fewer if CPUs are few)."""
    ordered = sorted(set(cpus))
    n = max(1, min(slots, len(ordered)))
    size, extra = divmod(len(ordered), n)
    sets, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        sets.append(tuple(ordered[start:end]))
        start = end
    return sets


@dataclass(frozen=True)
class Placement:
    """What one run is given: host GPU indices (NVML order) and the CPUs it is pinned to."""

    gpus: tuple[int, ...] = ()
    #: None: not pinned (it may use every CPU of the host)
    cpus: tuple[int, ...] | None = None
    #: NUMA nodes its memory is bound to (docker runner); None: not bound
    mems: tuple[int, ...] | None = None

    def describe(self) -> str:
        """``gpus 0,1`` / ``cpus 0-3`` / both, for progress lines; empty when neither."""
        return describe_placement(self.gpus, self.cpus)


def describe_placement(gpus: Sequence[int], cpus: Sequence[int] | None) -> str:
    """``gpus 0,1`` / ``cpus 0-3`` / both: where a run goes, for people; empty when neither."""
    parts = []
    if gpus:
        parts.append("gpus " + ",".join(str(g) for g in gpus))
    if cpus is not None:
        parts.append("cpus " + format_cpulist(cpus))
    return " ".join(parts)


def pins_cpu_slots(execution: Execution, experiment: Experiment) -> bool:
    """Whether runs of ``experiment`` get a slot's CPU set: CPU runs, no simulated GPUs, parallel."""
    return (execution.max_parallel > 1 and experiment.device == "cpu"
            and execution.gpus_per_run(experiment) == 0)


def slots_for(execution: Execution, experiments: Sequence[Experiment],
              cpus: Sequence[int] | None = None) -> int:
    """How many runs can be in flight at once: max_parallel, unless GPUs or CPUs run short."""
    n = execution.max_parallel
    needs = [execution.gpus_per_run(e) for e in experiments]
    gpu_needs = [k for k in needs if k > 0]
    if gpu_needs:
        n = min(n, max(1, len(execution.gpus) // min(gpu_needs)))
    if n > 1 and any(pins_cpu_slots(execution, e) for e in experiments):
        n = min(n, len(cpu_sets(host_cpus() if cpus is None else cpus, n)))
    return max(1, n)


def gpu_affinity(gpus: Sequence[int], library: GpuLibrary,
                 device: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """The host CPUs and NUMA nodes local to ``gpus`` that this process may use (None: unknown)."""
    if not gpus or not measures_gpus(device, library):
        return None, None
    try:
        with HostGpus.open(library) as host:
            local, nodes = host.local_cpus(gpus), host.numa_nodes(gpus)
    except GpusUnavailable:
        return None, None
    usable = set(host_cpus())
    near = tuple(c for c in local or () if c in usable) or None
    online = set(host_numa_nodes() or ())
    mems = tuple(n for n in nodes or () if n in online) or None
    return near, mems
