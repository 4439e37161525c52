"""Two runs at once in real containers, each pinned to its own CPU set (issue 13).

A small CPU study (tiny model, PyTorch image, 4 runs, execution.max_parallel 2) through the
command line: the runs overlap in time, each container gets its slot's cpuset (read from the
engine while it runs), the records and results are complete and say which runs overlapped.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_study_docker import check_results

from harness.devices.affinity import format_cpulist
from harness.results.manifest import load as load_manifest
from harness.results.schema import Manifest

REPO = Path(__file__).resolve().parents[2]

STUDY = """
name: ptest
experiment:
  model: {model}
  backend: pytorch
  device: cpu
  precision: fp32
  batch_size: 2
  workload: {{num_prompts: 4, input_tokens: 16, output_tokens: 8, seed: 3}}
  measurement: {{warmup_batches: 1, baseline_s: 0, min_window_s: 3, prefill_split: false}}
sweep:
  batch_size: [1, 4]
execution: {{cycles: 2, order: sequential, timeout_s: 300, runner: docker, max_parallel: 2}}
output_dir: {out}
"""


def watch_cpusets(client, stop: threading.Event, seen: dict[str, str]) -> None:
    """Record each running container's cpuset, by run id, until ``stop`` is set."""
    while not stop.is_set():
        try:
            for c in client.containers.list(filters={"label": "org.harness.study=ptest"}):
                run_id = c.labels.get("org.harness.run")
                seen.setdefault(run_id, c.attrs["HostConfig"].get("CpusetCpus") or "")
        except Exception:  # noqa: BLE001 - a container removed while listed
            pass
        stop.wait(0.2)


def spans_overlap(manifest: Manifest) -> bool:
    from harness.controller.overlap import unix_of

    spans = sorted((unix_of(r.started_at), unix_of(r.finished_at)) for r in manifest.runs)
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False))


@pytest.mark.docker
@pytest.mark.slow
def test_two_runs_at_once_on_disjoint_cpusets(tmp_path, docker_client, pytorch_cpu_image,
                                              tiny_model):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: no two disjoint CPU sets to run on")
    out = tmp_path / "results"
    study = tmp_path / "study.yaml"
    study.write_text(STUDY.format(model=tiny_model, out=out))
    seen: dict[str, str] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_cpusets, args=(docker_client, stop, seen))
    watcher.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "study", "run", str(study)],
            capture_output=True, text=True, cwd=REPO, timeout=600,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        stop.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = list(out.iterdir())
    manifest = check_results(study_dir)
    assert load_manifest(study_dir).runner == "docker"
    assert spans_overlap(manifest), "no two runs were in flight at once"
    sets = {format_cpulist(r.cpus or []) for r in manifest.runs}
    assert len(sets) == 2 and all(s for s in sets)  # two slots, each its own CPUs
    by_id = {r.run_id: r for r in manifest.runs}
    for rec in manifest.runs:
        if rec.run_id in seen:  # the engine's own word for it, read while the run ran
            assert seen[rec.run_id] == format_cpulist(rec.cpus or []), rec.run_id
        for other in rec.overlapped_with:
            assert not set(by_id[other].cpus or []) & set(rec.cpus or [])
        assert f"cpus {format_cpulist(rec.cpus or [])}" in proc.stdout
    assert len(seen) >= 2, f"the watcher saw too few containers: {seen}"
    assert any(r.overlapped_with for r in manifest.runs)
    assert "overlapped other runs" in (study_dir / "report" / "report.md").read_text()
    left = docker_client.containers.list(all=True, filters={"label": "org.harness.study=ptest"})
    assert left == [], "a container was left behind"
