"""Host interference: /proc and cgroup (v1 and v2) counters, and a real CPU hog beside a run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.agent.interference import HostProbe, interference
from harness.results.io import read_model
from harness.results.schema import ExperimentResult

REPO = Path(__file__).resolve().parents[2]
TICK = os.sysconf("SC_CLK_TCK")


def fake_proc(root: Path, busy_ticks: int, own_ticks: int, waits_ns: int, stranger: bool) -> Path:
    """A /proc with an ancestor (1), the agent (10), its child (11) and maybe a stranger (50)."""
    proc = root / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "stat").write_text(f"cpu  {busy_ticks} 0 0 5000 7 0 0 0 0 0\ncpu0 1 0 0 0\ncpu1 1 0 0 0\n")
    (proc / "loadavg").write_text("1.50 1.00 0.50 2/200 99\n")
    tree = {1: 0, 10: 1, 11: 10, **({50: 1} if stranger else {})}
    for pid, ppid in tree.items():
        folder = proc / str(pid)
        (folder / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        ticks = own_ticks if pid in (10, 11) else 0
        # pid (comm with a space) state ppid ... utime stime cutime cstime (fields 14-17)
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(ticks), "0", "0", "0"] + ["0"] * 30
        (folder / "stat").write_text(f"{pid} (a name) {' '.join(fields)}\n")
        (folder / "task" / str(pid) / "schedstat").write_text(
            f"123 {waits_ns if pid in (10, 11) else 0} 4\n")
    return proc


def cgroup_v1(root: Path, usage_ns: int, pids: list[int]) -> Path:
    cg = root / "cgroup"
    (cg / "cpuacct").mkdir(parents=True, exist_ok=True)
    (cg / "cpuacct" / "cpuacct.usage").write_text(f"{usage_ns}\n")
    (cg / "cpuacct" / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
    return cg


def cgroup_v2(root: Path, usage_us: int, pids: list[int]) -> Path:
    cg = root / "cgroup"
    cg.mkdir(parents=True, exist_ok=True)
    (cg / "cpu.stat").write_text(f"usage_usec {usage_us}\nuser_usec 1\nsystem_usec 1\n")
    (cg / "cgroup.procs").write_text("".join(f"{p}\n" for p in pids))
    return cg


@pytest.mark.parametrize("version", [1, 2])
def test_in_its_own_container_the_run_is_its_cgroup(tmp_path: Path, version: int) -> None:
    make = cgroup_v1 if version == 1 else cgroup_v2
    scale = 1e9 if version == 1 else 1e6
    proc = fake_proc(tmp_path, 1000, 100, 0, stranger=False)
    probe = HostProbe(proc=proc, cgroup=make(tmp_path, int(2.0 * scale), [1, 10, 11]), pid=10)
    start = probe.snapshot()
    fake_proc(tmp_path, 1000 + 4 * TICK, 100, 500_000_000, stranger=False)  # 4 s busy, 0.5 s wait
    make(tmp_path, int(5.0 * scale), [1, 10, 11])  # the container used 3 s of it
    end = probe.snapshot()
    found = interference(start, end, 2.0, probe.cpu_count(), other_gpu_processes=0)
    assert found.own_cpu_source == "cgroup"
    assert found.host_busy_cpu_s == pytest.approx(4.0) and found.own_cpu_s == pytest.approx(3.0)
    assert found.other_cpu_s == pytest.approx(1.0)
    assert found.other_cpu_share == pytest.approx(1.0 / (2 * 2.0))  # two CPUs, 2 s
    assert found.own_wait_s == pytest.approx(1.0)  # two tasks waited 0.5 s each
    assert found.own_wait_share == pytest.approx(0.5)
    assert found.load_average_start == [1.5, 1.0, 0.5] and found.other_gpu_processes == 0


def test_a_shared_cgroup_falls_back_to_the_process_tree(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, 1000, 100, 0, stranger=True)
    probe = HostProbe(proc=proc, cgroup=cgroup_v1(tmp_path, 0, [1, 10, 11, 50]), pid=10)
    start = probe.snapshot()
    fake_proc(tmp_path, 1000 + 4 * TICK, 100 + TICK, 0, stranger=True)  # each of ours: +1 s
    cgroup_v1(tmp_path, 10**10, [1, 10, 11, 50])
    found = interference(start, probe.snapshot(), 2.0, probe.cpu_count(), None)
    assert found.own_cpu_source == "process tree"
    assert found.own_cpu_s == pytest.approx(2.0) and found.other_cpu_s == pytest.approx(2.0)
    assert found.other_gpu_processes is None


def test_unreadable_counters_are_unknown_not_zero(tmp_path: Path) -> None:
    probe = HostProbe(proc=tmp_path / "none", cgroup=tmp_path / "none", pid=10)
    found = interference(probe.snapshot(), probe.snapshot(), 1.0, probe.cpu_count(), None)
    assert found.host_busy_cpu_s is None and found.other_cpu_share is None
    assert found.own_wait_share is None and found.load_average_end is None


@pytest.mark.slow
def test_a_cpu_hog_beside_a_local_run_is_named(tmp_path: Path) -> None:
    """Tried as issue 11 describes: CPU-heavy processes started beside a local-runner run."""
    from harness.models import write_tiny_model

    model = write_tiny_model(tmp_path / "tiny", layers=1, hidden_size=64)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump({
        "model": str(model), "backend": "pytorch", "device": "cpu", "precision": "fp32",
        "batch_size": 2, "workload": {"num_prompts": 4, "input_tokens": 16, "output_tokens": 8},
        "measurement": {"warmup_batches": 1, "baseline_s": 0, "loaded_idle_s": 0,
                        "min_window_s": 3, "prefill_split": False},
    }))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", str(experiment), "--runner", "local",
             "--output-dir", str(tmp_path / "out")],
            capture_output=True, text=True, cwd=REPO, timeout=600,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result_file,) = (tmp_path / "out").glob("*/result.json")
    result = read_model(result_file, ExperimentResult)
    host = result.interference
    assert host.own_cpu_source == "process tree"  # the runner's siblings share its cgroup
    assert host.other_cpu_share is not None and host.other_cpu_share >= 0.25
    assert host.own_wait_s is not None and host.own_wait_s > 0
    assert "host_contention" in [w.code for w in result.warnings]
