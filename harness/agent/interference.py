"""What else used the machine during a window: CPU time outside the run, run-queue waits, load.

Read at both window edges (docs/methodology.md, section 2.7):
- the machine's busy CPU time from ``/proc/stat`` (user, nice, system, irq, softirq, steal);
  in a container this file still counts the whole host;
- the run's own CPU time: its cgroup (v2 ``cpu.stat`` ``usage_usec``; v1 ``cpuacct.usage``)
  when every process in it is the agent, a descendant or an ancestor (the run's container),
  else this process and its descendants from ``/proc/PID/stat``;
- how long the run's threads waited for a CPU while runnable (``/proc/PID/task/TID/schedstat``,
  the second field, in ns): the direct sign that something else took the CPUs;
- the load average (``/proc/loadavg``).
Anything unreadable is None, never 0.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from harness.results.schema import Interference

#: /proc/stat's cpu columns counted as busy (user includes guest): every one but idle and iowait
_BUSY = (0, 1, 2, 5, 6, 7)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@dataclass(frozen=True)
class HostSnapshot:
    """The machine's and the run's CPU counters at one moment."""

    t_s: float
    host_busy_s: float | None
    cgroup_cpu_s: float | None
    tree_cpu_s: float | None
    own_wait_s: float | None
    load_average: list[float] | None


class HostProbe:
    """Reads the counters above for the run whose top process is ``pid``."""

    def __init__(
        self,
        *,
        proc: Path = Path("/proc"),
        cgroup: Path = Path("/sys/fs/cgroup"),
        pid: int | None = None,
    ) -> None:
        self.proc = proc
        self.cgroup = cgroup
        self.pid = os.getpid() if pid is None else pid
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> HostSnapshot:
        """The counters now."""
        pids, ancestors = self._run_pids()
        members = self._cgroup_pids()
        ours = members is not None and members <= set(pids) | ancestors
        return HostSnapshot(
            t_s=time.perf_counter(),
            host_busy_s=self._host_busy_s(),
            cgroup_cpu_s=self._cgroup_s() if ours else None,
            tree_cpu_s=self._tree_cpu_s(pids),
            own_wait_s=self._wait_s(pids),
            load_average=self._load_average(),
        )

    def cpu_count(self) -> int | None:
        """CPUs counted in /proc/stat (the host's, also inside a container)."""
        text = _read(self.proc / "stat") or ""
        count = sum(1 for line in text.splitlines() if line.startswith("cpu") and line[3:4].isdigit())
        return count or None

    def _host_busy_s(self) -> float | None:
        text = _read(self.proc / "stat") or ""
        for line in text.splitlines():
            if line.startswith("cpu "):
                fields = [int(v) for v in line.split()[1:]]
                return sum(fields[i] for i in _BUSY if i < len(fields)) * self.tick_s
        return None

    def _cgroup_pids(self) -> set[int] | None:
        for folder in (".", "cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
            text = _read(self.cgroup / folder / "cgroup.procs")
            if text is not None:
                return {int(v) for v in text.split() if v.isdigit()}
        return None

    def _cgroup_s(self) -> float | None:
        v2 = _read(self.cgroup / "cpu.stat")
        if v2 is not None:
            for line in v2.splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        for folder in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
            v1 = _read(self.cgroup / folder / "cpuacct.usage")
            if v1 is not None and v1.strip().isdigit():
                return int(v1) / 1e9
        return None

    def _stat_fields(self, pid: int) -> list[str] | None:
        text = _read(self.proc / str(pid) / "stat")
        if text is None or ")" not in text:
            return None
        return text.rsplit(")", 1)[1].split()  # fields from the state on (the name may hold spaces)

    def _run_pids(self) -> tuple[list[int], set[int]]:
        """This process and every descendant alive now; and this process's ancestors."""
        children: dict[int, list[int]] = {}
        parent: dict[int, int] = {}
        for entry in self.proc.iterdir() if self.proc.is_dir() else []:
            if entry.name.isdigit():
                fields = self._stat_fields(int(entry.name))
                if fields is not None:
                    children.setdefault(int(fields[1]), []).append(int(entry.name))
                    parent[int(entry.name)] = int(fields[1])
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        ancestors, pid = set(), parent.get(self.pid, 0)
        while pid > 0 and pid not in ancestors:
            ancestors.add(pid)
            pid = parent.get(pid, 0)
        return found, ancestors

    def _tree_cpu_s(self, pids: list[int]) -> float | None:
        total, seen = 0, False
        for pid in pids:
            fields = self._stat_fields(pid)
            if fields is not None:
                total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
                seen = True
        return total * self.tick_s if seen else None

    def _wait_s(self, pids: list[int]) -> float | None:
        total, seen = 0, False
        for pid in pids:
            tasks = self.proc / str(pid) / "task"
            for task in tasks.iterdir() if tasks.is_dir() else []:
                parts = (_read(task / "schedstat") or "").split()
                if len(parts) >= 2:
                    total += int(parts[1])
                    seen = True
        return total / 1e9 if seen else None

    def _load_average(self) -> list[float] | None:
        parts = (_read(self.proc / "loadavg") or "").split()
        return [float(v) for v in parts[:3]] if len(parts) >= 3 else None


def _delta(a: float | None, b: float | None) -> float | None:
    return b - a if a is not None and b is not None else None


def interference(
    start: HostSnapshot, end: HostSnapshot, window_s: float, cpu_count: int | None,
    other_gpu_processes: int | None,
) -> Interference:
    """What the counters say about the window between two snapshots."""
    busy = _delta(start.host_busy_s, end.host_busy_s)
    own = _delta(start.cgroup_cpu_s, end.cgroup_cpu_s)
    own_source = "cgroup"
    if own is None:
        own, own_source = _delta(start.tree_cpu_s, end.tree_cpu_s), "process tree"
    wait = _delta(start.own_wait_s, end.own_wait_s)
    notes = []
    other = None
    if busy is not None and own is not None:
        other = busy - own
        if other < 0:  # the two counters tick at different granularities
            notes.append(f"the run's CPU time exceeded the host's busy time by {-other:.2f} s")
            other = 0.0
    capacity = cpu_count * window_s if cpu_count and window_s > 0 else None
    return Interference(
        cpu_count=cpu_count,
        host_busy_cpu_s=busy,
        own_cpu_s=own,
        own_cpu_source=own_source,
        other_cpu_s=other,
        other_cpu_share=other / capacity if other is not None and capacity else None,
        own_wait_s=wait,
        own_wait_share=wait / window_s if wait is not None and window_s > 0 else None,
        load_average_start=start.load_average,
        load_average_end=end.load_average,
        other_gpu_processes=other_gpu_processes,
        notes=notes,
    )
