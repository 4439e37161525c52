"""Which GPUs a run gets (issue 11, 3a), plans that do not fit, and how each runtime hands GPUs
to the agent: real ones by device request and CUDA_DEVICE_ORDER=PCI_BUS_ID (3b), simulated
ones by their settings folder and truth file."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.config.experiment import Experiment
from harness.config.study import Execution, Study
from harness.config.sweep import expand
from harness.controller.launch import Launcher
from harness.controller.placement import assign_gpus
from harness.controller.runtimes.base import RunJob, RunOutcome
from harness.controller.runtimes.docker import SIMGPU_STATE, DockerRuntime
from harness.controller.runtimes.local import LocalRuntime, local_agent_env
from harness.controller.single import prepare_experiment
from harness.devices.library import run_library, study_library
from harness.errors import UserInputError
from harness.results import events
from harness.results.io import read_model
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, RunInfo, RunSpec
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.truth import TRUTH_FILE

SIM = SimulatedGpus(count=8)


def exp(**fields: Any) -> Experiment:
    return Experiment(model="org/model", **fields)


# --- how many and which -----------------------------------------------------------------------


def test_a_run_gets_exactly_the_gpus_its_engine_uses() -> None:
    ex = Execution(gpus=[3, 1, 0, 2])
    assert assign_gpus(ex, exp(device="cuda")) == [3]  # PyTorch: one device
    tp = exp(device="cuda", backend="vllm", vllm={"tensor_parallel_size": 2})
    assert assign_gpus(ex, tp) == [3, 1]
    trt = exp(device="cuda", backend="tensorrt_llm",
              tensorrt_llm={"tensor_parallel_size": 2, "pipeline_parallel_size": 2})
    assert assign_gpus(ex, trt) == [3, 1, 0, 2]
    assert assign_gpus(ex, exp(device="cpu", precision="fp32")) == []  # no GPU to measure


def test_simulated_gpus_stand_in_for_every_run_cpu_ones_too() -> None:
    ex = Execution(gpus=[0, 1, 2, 3], simulated_gpus=SIM)
    cpu = exp(device="cpu", precision="fp32")
    assert assign_gpus(ex, cpu) == [0]  # at least one, driven by the engine on the CPU
    tp = exp(device="cuda", backend="vllm", vllm={"tensor_parallel_size": 4})
    assert assign_gpus(ex, tp) == [0, 1, 2, 3]
    per_run = Execution(gpus=[0, 1, 2], simulated_gpus=SimulatedGpus(count=8, per_run=3))
    assert assign_gpus(per_run, cpu) == [0, 1, 2]


def test_a_plan_that_does_not_fit_is_refused_when_it_is_made() -> None:
    study = Study(
        name="tp", experiment={"model": "org/model", "device": "cuda", "backend": "vllm"},
        sweep={"vllm.tensor_parallel_size": [1, 4]}, execution={"gpus": [0, 1]},
    )
    with pytest.raises(UserInputError) as raised:
        expand(study, source="tp.yaml")
    (problem,) = raised.value.problems
    big = exp(device="cuda", backend="vllm", vllm={"tensor_parallel_size": 4})
    assert problem.startswith("tp.yaml: experiment ") and big.id in problem
    assert "needs 4 GPUs per run" in problem and "execution.gpus lists 2 ([0, 1])" in problem


def test_simulated_gpus_must_exist() -> None:
    with pytest.raises(ValueError, match="beyond the 2 simulated ones"):
        Execution(gpus=[0, 2], simulated_gpus=SimulatedGpus(count=2))
    with pytest.raises(ValueError, match="per_run 3 is more than the 2 simulated GPUs"):
        SimulatedGpus(count=2, per_run=3)


def test_a_single_run_that_does_not_fit_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "tp.yaml"
    file.write_text("model: org/model\ndevice: cuda\nbackend: vllm\nvllm: {tensor_parallel_size: 2}\n")
    with pytest.raises(UserInputError, match="needs 2 GPUs per run"):
        prepare_experiment(file, runner="local", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- the runtimes -----------------------------------------------------------------------------


def job(tmp_path: Path, device: str, library: GpuLibrary | None = None) -> RunJob:
    run_dir = tmp_path / "study" / "runs" / "r-c1"
    run_dir.mkdir(parents=True, exist_ok=True)
    return RunJob(run_id="r-c1", study="s", run_dir=run_dir, image="harness/x:cpu",
                  model_host_path=None, model_ref="m", hf_cache=None, gpus=[1, 3], device=device,
                  timeout_s=60, gpu_library=run_library(library or GpuLibrary(), run_dir))


def sim_library(tmp_path: Path) -> GpuLibrary:
    return study_library(Execution(gpus=[1, 3], simulated_gpus=SIM), tmp_path / "study")


def test_local_agent_sees_real_gpus_in_pci_order_and_no_device_for_simulated(tmp_path: Path) -> None:
    real = local_agent_env(job(tmp_path, "cuda"), environ={})
    assert real["CUDA_VISIBLE_DEVICES"] == "1,3" and real["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    sim = local_agent_env(job(tmp_path, "cuda", sim_library(tmp_path)), environ={})
    assert "CUDA_VISIBLE_DEVICES" not in sim and "CUDA_DEVICE_ORDER" not in sim
    cpu = local_agent_env(job(tmp_path, "cpu"), environ={})
    assert "CUDA_VISIBLE_DEVICES" not in cpu and "CUDA_DEVICE_ORDER" not in cpu
    lib = LocalRuntime().gpu_library_for_agent(job(tmp_path, "cpu", sim_library(tmp_path)))
    assert lib.state_dir == str((tmp_path / "study" / "simulated-gpus").resolve())
    assert lib.truth_file == str((tmp_path / "study" / "runs" / "r-c1" / TRUTH_FILE).resolve())


class Created:
    """A docker client whose containers.create records what it was asked."""

    def __init__(self) -> None:
        self.kwargs: dict[str, Any] = {}
        self.containers = SimpleNamespace(create=self.create)

    def create(self, image: str, **kwargs: Any) -> str:
        self.kwargs = kwargs
        return "container"


def test_docker_requests_devices_for_real_gpus_only(tmp_path: Path) -> None:
    client = Created()
    runtime = DockerRuntime(client=client, cache_dir=tmp_path / "cache")
    runtime._create(job(tmp_path, "cuda"))
    (request,) = client.kwargs["device_requests"]
    assert request.device_ids == ["1", "3"]
    assert client.kwargs["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"

    sim_job = job(tmp_path, "cuda", sim_library(tmp_path))
    runtime._create(sim_job)
    assert "device_requests" not in client.kwargs
    assert "CUDA_DEVICE_ORDER" not in client.kwargs["environment"]
    state = (tmp_path / "study" / "simulated-gpus").resolve()
    assert client.kwargs["volumes"][str(state)] == {"bind": SIMGPU_STATE, "mode": "ro"}
    agent = runtime.gpu_library_for_agent(sim_job)
    assert (agent.kind, agent.state_dir, agent.truth_file) == (
        "simulated", SIMGPU_STATE, f"/results/{TRUTH_FILE}")


class Stub:
    """A runtime that runs nothing (the run fails); it only hands paths to the agent."""

    name = "stub"

    def model_path_for_agent(self, job: RunJob) -> str:
        return "m"

    def gpu_library_for_agent(self, job: RunJob) -> GpuLibrary:
        return job.gpu_library.model_copy(update={"state_dir": "/seen-by-agent"})

    def prepare(self, image: str) -> None:
        return None

    def run(self, job: RunJob) -> RunOutcome:
        return RunOutcome(exit_code=1, duration_s=0.0, reason=FailureReason.AGENT_ERROR,
                          error="not run")

    def stop(self) -> None: ...


def test_the_run_spec_names_the_simulated_gpus_the_host_assigned(tmp_path: Path) -> None:
    ex = Execution(gpus=[5, 2], simulated_gpus=SIM, runner="local")
    launcher = Launcher(
        Stub(), study="s", execution=ex, images={"pytorch": "x"}, hf_cache=None,  # type: ignore[arg-type]
        base_dir=tmp_path, observer=events.ignore, sleep=lambda s: None, stopping=lambda: False,
        gpu_library=study_library(ex, tmp_path),
    )
    model = tmp_path / "model"
    model.mkdir()
    e = Experiment(model=str(model), device="cpu", precision="fp32")
    run_dir = tmp_path / "runs" / "r-c1"
    run_dir.mkdir(parents=True)
    info = RunInfo(study="s", experiment_id=e.id, cycle=1, run_id="r-c1")
    attempt = launcher.attempt(info, e, run_dir, assign_gpus(ex, e))
    spec = read_model(run_dir / "config.json", RunSpec)
    assert spec.gpu_uuids == [SIM.uuid(5)]
    assert spec.gpu_library.kind == "simulated" and spec.gpu_library.simulated == SIM
    assert spec.gpu_library.state_dir == "/seen-by-agent"
    assert spec.gpu_library.truth_file == str((run_dir / TRUTH_FILE).resolve())
    assert attempt.thermal["gpus"] == [5] and attempt.thermal["checked"] is True


def test_config_json_names_the_library_only_when_it_is_not_the_system_one() -> None:
    e = exp(device="cpu", precision="fp32")
    info = RunInfo(study="s", experiment_id=e.id, cycle=1, run_id="r-c1")
    plain = RunSpec(run=info, experiment=e, model_path="m").model_dump(mode="json")
    assert "gpu_library" not in plain  # agents built before the field still read the file
    assert RunSpec.model_validate(plain).gpu_library == GpuLibrary()
    sim = RunSpec(run=info, experiment=e, model_path="m",
                  gpu_library=GpuLibrary(kind="simulated", simulated=SIM)).model_dump(mode="json")
    assert RunSpec.model_validate(sim).gpu_library.simulated == SIM


# --- the pool: runs at once on disjoint GPUs (issue 13) ----------------------------------------


def test_the_pool_hands_out_disjoint_gpus_under_concurrency() -> None:
    import random
    import threading

    from harness.controller.placement import GpuPool

    pool = GpuPool([4, 5, 6, 7, 8])
    held: set[int] = set()
    guard = threading.Lock()
    clashes: list[list[int]] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            gpus = pool.acquire(rng.choice([1, 2, 3]))
            assert gpus is not None
            with guard:
                if held & set(gpus):
                    clashes.append(gpus)
                held.update(gpus)
            with guard:
                held.difference_update(gpus)
            pool.release(gpus)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert clashes == [] and pool.in_use() == []


def test_the_pool_takes_the_first_free_gpus_listed_and_waits_for_more() -> None:
    import threading

    from harness.controller.placement import GpuPool

    pool = GpuPool([3, 1, 0, 2])
    assert pool.acquire(2) == [3, 1]
    assert pool.acquire(1) == [0]
    got: list[list[int] | None] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(2)))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive() and got == []  # one GPU free, two needed: it waits
    pool.release([3, 1])
    waiter.join(timeout=5)
    assert got == [[3, 1]]


def test_the_pool_refuses_more_than_it_lists_and_gives_up_when_stopping() -> None:
    from harness.controller.placement import GpuPool

    pool = GpuPool([0, 1])
    with pytest.raises(UserInputError, match="needs 3 GPUs, but execution.gpus lists 2"):
        pool.acquire(3)
    pool.acquire(2)
    assert pool.acquire(1, stopping=lambda: True) is None


def test_cpu_sets_split_evenly_and_never_empty() -> None:
    from harness.controller.placement import cpu_sets

    assert cpu_sets(range(8), 2) == [(0, 1, 2, 3), (4, 5, 6, 7)]
    assert cpu_sets([0, 1, 2, 3, 4], 2) == [(0, 1, 2), (3, 4)]
    assert cpu_sets([5, 1, 3], 3) == [(1,), (3,), (5,)]
    assert cpu_sets([0, 1], 4) == [(0,), (1,)]  # fewer CPUs than slots: fewer slots
    assert cpu_sets([0, 1, 2, 3], 1) == [(0, 1, 2, 3)]


def test_how_many_run_at_once() -> None:
    from harness.controller.placement import slots_for

    cuda = exp(device="cuda")
    tp2 = exp(device="cuda", backend="vllm", vllm={"tensor_parallel_size": 2})
    cpu = exp(device="cpu", precision="fp32")
    assert slots_for(Execution(gpus=[0, 1, 2, 3], max_parallel=8), [cuda]) == 4
    assert slots_for(Execution(gpus=[0, 1, 2, 3], max_parallel=8), [tp2]) == 2
    assert slots_for(Execution(gpus=[0, 1, 2, 3], max_parallel=2), [cuda]) == 2
    assert slots_for(Execution(max_parallel=4), [cpu], cpus=[0, 1, 2, 3, 4, 5]) == 4
    assert slots_for(Execution(max_parallel=4), [cpu], cpus=[0, 1]) == 2
    assert slots_for(Execution(), [cpu, cuda]) == 1


def test_max_parallel_does_not_change_experiment_ids() -> None:
    base = {"name": "s", "experiment": {"model": "org/model", "device": "cpu",
                                        "precision": "fp32"}, "sweep": {"batch_size": [1, 2]}}
    one = expand(Study.model_validate(base))
    two = expand(Study.model_validate({**base, "execution": {"max_parallel": 2}}))
    assert [r.run_id for r in one.runs] == [r.run_id for r in two.runs]
    with pytest.raises(ValueError, match="max_parallel"):
        Execution(max_parallel=0)


def test_a_pinned_job_reaches_docker_as_a_cpuset(tmp_path) -> None:
    from unittest import mock

    client = mock.MagicMock()
    runtime = DockerRuntime(client=client, cache_dir=tmp_path / "cache")
    run_dir = tmp_path / "s" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    job = RunJob(run_id="r1", study="s", run_dir=run_dir, image="img", model_host_path=None,
                 model_ref="org/model", hf_cache=None, gpus=[], device="cpu", timeout_s=10,
                 cpus=(2, 3, 4, 7))
    runtime._create(job)
    assert client.containers.create.call_args.kwargs["cpuset_cpus"] == "2-4,7"
    runtime._create(RunJob(**{**job.__dict__, "cpus": None}))
    assert "cpuset_cpus" not in client.containers.create.call_args.kwargs


def test_a_pinned_local_agent_runs_on_its_cpus(tmp_path) -> None:
    import os

    cpu = sorted(os.sched_getaffinity(0))[-1]
    fake_python = tmp_path / "python"  # stands in for the agent: says where it may run
    fake_python.write_text("#!/bin/sh\ngrep Cpus_allowed_list /proc/self/status\n")
    fake_python.chmod(0o755)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    job = RunJob(run_id="r1", study="s", run_dir=run_dir, image=None, model_host_path=None,
                 model_ref="org/model", hf_cache=None, gpus=[], device="cpu", timeout_s=30,
                 cpus=(cpu,))
    outcome = LocalRuntime(python=str(fake_python)).run(job)
    assert outcome.exit_code == 0
    assert (run_dir / "container.log").read_text().split()[-1] == str(cpu)
    LocalRuntime(python=str(fake_python)).run(RunJob(**{**job.__dict__, "cpus": None}))
    everything = (run_dir / "container.log").read_text().split()[-1]
    assert everything != str(cpu) or len(os.sched_getaffinity(0)) == 1
