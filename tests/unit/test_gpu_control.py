"""GPU settings (gpu: power limit, locked clocks) on simulated GPUs: applied and read back,
journalled before the change, restored after the run and by recovery, refused at preflight."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from harness.agent import activity
from harness.agent.activity import Activity
from harness.config.experiment import Experiment
from harness.config.gpu import GpuSettings
from harness.config.study import Execution, Study
from harness.config.sweep import expand
from harness.controller.gpucheck import gpu_problems
from harness.controller.gpucontrol import GpuControl, ManifestJournal, restore_journal
from harness.errors import RunFailure, UserInputError
from harness.results.events import Note
from harness.results.gpusettings import GpuJournalEntry
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, Manifest, RunRecord
from harness.testing.simgpu import commands as simnvml
from harness.testing.simgpu.config import SimulatedGpus
from harness.testing.simgpu.nvml import SimulatedNvml

BASE = {"model": "m", "backend": "pytorch", "device": "cpu", "precision": "fp32"}


@pytest.fixture(autouse=True)
def quiet_bus() -> Iterator[None]:
    activity.publish(Activity.NO_CONTEXT)
    yield
    activity.publish(Activity.NO_CONTEXT)


def sim_library(state: Path | None, **config: object) -> GpuLibrary:
    return GpuLibrary(kind="simulated", simulated=SimulatedGpus(count=2, **config),  # type: ignore[arg-type]
                      state_dir=str(state) if state else None)


def held(state: Path, index: int = 0) -> tuple[int, int, int]:
    """What another process sees on simulated GPU ``index``: enforced limit (mW) and clocks."""
    lib = SimulatedNvml(SimulatedGpus(count=2), state_dir=state)
    lib.nvmlInit()
    try:
        h = lib.nvmlDeviceGetHandleByIndex(index)
        device = lib._devices[index]
        locked_sm = device.settings.gpu_locked_mhz[1] if device.settings.gpu_locked_mhz else 0
        locked_mem = device.settings.mem_locked_mhz[1] if device.settings.mem_locked_mhz else 0
        return lib.nvmlDeviceGetEnforcedPowerLimit(h), locked_sm, locked_mem
    finally:
        lib.nvmlShutdown()


def manifest() -> Manifest:
    return Manifest(study="s", study_file_sha256="0", created_at="t", updated_at="t",
                    state="running", harness_version="0",
                    runs=[RunRecord(run_id="r1", experiment_id="e", cycle=1, position=0)])


# --- the config -----------------------------------------------------------------------------


def test_gpu_settings_enter_the_id_only_when_set() -> None:
    plain = Experiment.model_validate(BASE)
    unset = Experiment.model_validate({**BASE, "gpu": {}})
    capped = Experiment.model_validate({**BASE, "gpu": {"power_limit_w": 300}})
    assert plain.id == unset.id
    assert '"gpu"' not in plain.canonical_json()
    assert capped.id != plain.id and '"power_limit_w":300' in capped.canonical_json()


@pytest.mark.parametrize("bad", [{"power_limit_w": 0}, {"sm_clock_mhz": -5},
                                 {"memory_clock_mhz": "fast"}, {"power_limit": 300}])
def test_bad_gpu_settings_name_the_field(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="gpu"):
        Experiment.model_validate({**BASE, "gpu": bad})


def study(execution: dict[str, object], device: str = "cpu") -> Study:
    return Study.model_validate({
        "name": "pl", "experiment": {**BASE, "device": device},
        "sweep": {"gpu.power_limit_w": [300, 450, 700]}, "execution": execution})


def test_a_power_limit_sweep_plans_one_experiment_per_limit() -> None:
    plan = expand(study({"simulated_gpus": {"count": 1}}))
    limits = [p.experiment.gpu.power_limit_w for p in plan.experiments]
    assert sorted(limits) == [300, 450, 700]  # type: ignore[type-var]
    assert len({p.id for p in plan.experiments}) == 3


def test_gpu_settings_on_a_cpu_experiment_without_gpus_are_refused() -> None:
    with pytest.raises(UserInputError) as e:
        expand(study({}))
    assert "gpu: power_limit_w=300 needs GPUs" in str(e.value.problems)
    expand(study({}, device="cuda"))  # cuda: planned


# --- apply, read back, restore --------------------------------------------------------------


def test_apply_reads_back_and_restore_puts_back(tmp_path: Path) -> None:
    m = manifest()
    saved: list[list[GpuJournalEntry]] = []

    def save() -> None:
        # the journal reaches the manifest while the GPUs still hold their old settings
        saved.append(list(m.gpu_journal))
        if m.gpu_journal:
            assert held(tmp_path) == (700_000, 0, 0)

    control = GpuControl(sim_library(tmp_path), ManifestJournal(m, save))
    settings = GpuSettings(power_limit_w=300, sm_clock_mhz=1410, memory_clock_mhz=2619)
    record = control.apply("r1", settings, [0, 1])
    assert saved and saved[0][0].gpus[0].power_limit_w == 700.0
    assert [g.applied.power_limit_w for g in record.gpus] == [300.0, 300.0]
    assert [g.previous.power_limit_w for g in record.gpus] == [700.0, 700.0]
    assert record.gpus[1].uuid == SimulatedGpus().uuid(1)
    assert held(tmp_path, 0) == held(tmp_path, 1) == (300_000, 1410, 2619)
    assert [e.run_id for e in m.gpu_journal] == ["r1"]

    control.restore("r1", record)
    assert record.restored is True and record.restored_by == "controller"
    assert held(tmp_path, 0) == held(tmp_path, 1) == (700_000, 0, 0)
    assert m.gpu_journal == []


def test_a_refused_change_fails_the_run_and_undoes_what_was_set(tmp_path: Path) -> None:
    m = manifest()
    control = GpuControl(sim_library(tmp_path), ManifestJournal(m, lambda: None))
    with pytest.raises(RunFailure) as e:  # the power limit is set, then the clock lock refused
        control.apply("r1", GpuSettings(power_limit_w=300, sm_clock_mhz=5000), [0])
    assert e.value.reason == FailureReason.GPU_SETTINGS_FAILED
    assert "outside what the GPU allows" in str(e.value) and "were restored" in str(e.value)
    assert held(tmp_path) == (700_000, 0, 0) and m.gpu_journal == []


def test_not_permitted_fails_the_run_before_anything_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simnvml, "is_root", lambda: False)
    control = GpuControl(sim_library(tmp_path))
    with pytest.raises(RunFailure, match="needs root"):
        control.apply("r1", GpuSettings(power_limit_w=300), [0])
    assert held(tmp_path) == (700_000, 0, 0)


# --- preflight ------------------------------------------------------------------------------


def experiments(**gpu: int) -> list[Experiment]:
    return [Experiment.model_validate({**BASE, "gpu": gpu})]


def test_preflight_refuses_values_outside_the_gpus_range() -> None:
    ex = Execution(gpus=[0, 1], simulated_gpus=SimulatedGpus(count=2))
    problems = gpu_problems(experiments(power_limit_w=150, sm_clock_mhz=3000), ex, "s.yaml")
    text = "\n".join(problems)
    assert "GPU 0: gpu.power_limit_w 150 W is outside the allowed range 200-700 W" in text
    assert "GPU 1: gpu.power_limit_w 150 W" in text
    assert "gpu.sm_clock_mhz 3000 MHz is outside the supported range 345-1980 MHz" in text
    assert gpu_problems(experiments(power_limit_w=300, sm_clock_mhz=1410), ex, "s.yaml") == []
    assert gpu_problems(experiments(), Execution(), "s.yaml") == []  # nothing asked


def test_preflight_refuses_when_changes_are_not_permitted(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = Execution(simulated_gpus=SimulatedGpus(settings_permitted=False))
    (problem,) = gpu_problems(experiments(power_limit_w=300), ex, "s.yaml")
    assert "cannot be changed on GPU 0" in problem and "needs root" in problem
    monkeypatch.setattr(simnvml, "is_root", lambda: False)
    ex = Execution(simulated_gpus=SimulatedGpus())
    (problem,) = gpu_problems(experiments(power_limit_w=300), ex, "s.yaml")
    assert "run the study as root" in problem


def test_preflight_refuses_clock_locks_a_gpu_does_not_support(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = Execution(simulated_gpus=SimulatedGpus(clock_locking=False))
    control = GpuControl(sim_library(None, clock_locking=False))
    with pytest.raises(RunFailure, match="does not support it"):  # a run would fail so
        control.apply("r1", GpuSettings(sm_clock_mhz=1410), [0])
    assert gpu_problems(experiments(power_limit_w=300), ex, "s.yaml", probe_clocks=True) == []
    # at a start the lock is probed (and undone), so the study stops before any container
    problems = gpu_problems(experiments(sm_clock_mhz=1410), ex, "s.yaml", probe_clocks=True)
    assert len(problems) == 1 and "the sm clock cannot be locked on GPU 0" in problems[0]
    assert problems[0].endswith("drop gpu.sm_clock_mhz")
    # a plan touches no GPU: the lock is not probed there
    assert gpu_problems(experiments(sm_clock_mhz=1410), ex, "s.yaml") == []
    # where locks work, the probe leaves the clocks unlocked (what every run's restore leaves)
    from harness.devices.host import HostGpus

    locked: list[tuple[int, str, int]] = []
    lock = HostGpus.lock_clocks_mhz

    def spy(self: HostGpus, index: int, domain: str, mhz: int) -> None:
        locked.append((index, domain, mhz))
        lock(self, index, domain, mhz)

    monkeypatch.setattr(HostGpus, "lock_clocks_mhz", spy)
    assert gpu_problems(experiments(sm_clock_mhz=1410, memory_clock_mhz=2619), Execution(),
                        "s.yaml", sim_library(tmp_path), probe_clocks=True) == []
    assert locked == [(0, "sm", 1410), (0, "memory", 2619)]
    assert held(tmp_path) == (700_000, 0, 0)


# --- recovery -------------------------------------------------------------------------------


def test_recovery_restores_what_a_lost_controller_left(tmp_path: Path) -> None:
    m = manifest()
    lost = GpuControl(sim_library(tmp_path), ManifestJournal(m, lambda: None))
    lost.apply("r1", GpuSettings(power_limit_w=250, sm_clock_mhz=1020), [1])
    assert held(tmp_path, 1) == (250_000, 1020, 0)  # ... and the controller dies here
    notes: list[object] = []
    said = restore_journal(m, sim_library(tmp_path), notes.append)
    assert held(tmp_path, 1) == (700_000, 0, 0) and m.gpu_journal == []
    assert "restored the GPU settings a lost controller left" in said[0]
    assert "GPU 1: power limit 700 W, SM clock unlocked" in said[0]
    assert isinstance(notes[0], Note)
    record = m.record("r1").gpu_settings
    assert record is not None and record.restored and record.restored_by == "recovery"


def test_an_entry_that_cannot_be_restored_stays_for_the_next_start(tmp_path: Path,
                                                                     monkeypatch) -> None:
    m = manifest()
    GpuControl(sim_library(tmp_path), ManifestJournal(m, lambda: None)).apply(
        "r1", GpuSettings(power_limit_w=250), [0])
    monkeypatch.setattr(simnvml, "is_root", lambda: False)
    said = restore_journal(m, sim_library(tmp_path), lambda _: None)
    assert "could not be restored" in said[0] and len(m.gpu_journal) == 1
    assert m.record("r1").gpu_settings.restored is False  # type: ignore[union-attr]


# --- the simulated GPU under a cap ------------------------------------------------------------


def busy_for(state: Path, seconds: float) -> float:
    """Wall time of a busy stretch the engine spends ``seconds`` computing, on simulated GPU 0."""
    config = SimulatedGpus(count=1, clock_power_exponent=3.0)
    lib = SimulatedNvml(config, state_dir=state, engine_uuids=[config.uuid(0)])
    lib.nvmlInit()
    try:
        activity.publish(Activity.LOADED_IDLE)
        start = time.perf_counter()
        activity.publish(Activity.PREFILL)
        time.sleep(seconds)
        activity.publish(Activity.LOADED_IDLE)
        return time.perf_counter() - start
    finally:
        lib.nvmlShutdown()
        activity.publish(Activity.NO_CONTEXT)


def test_a_lower_power_limit_holds_the_engine_back(tmp_path: Path) -> None:
    host = SimulatedNvml(SimulatedGpus(count=1), state_dir=tmp_path)
    host.nvmlInit()
    free = busy_for(tmp_path, 0.2)
    host.nvmlDeviceSetPowerManagementLimit(host.nvmlDeviceGetHandleByIndex(0), 275_000)
    capped = busy_for(tmp_path, 0.2)
    host.nvmlShutdown()
    # prefill draws 550 W: at 275 W the clock share is (1/2) ** (1/3) = 0.79, 1.26 x the time
    assert free == pytest.approx(0.2, abs=0.05)
    assert capped == pytest.approx(0.2 / 0.5 ** (1 / 3), rel=0.15)
    assert pynvml.NVML_ERROR_NOT_SUPPORTED == 3  # the code host.py maps


def test_a_plan_warns_where_a_start_refuses_gpus_that_cannot_be_changed(tmp_path: Path) -> None:
    from harness.controller.preflight import check_study

    s = Study.model_validate({
        "name": "pl", "experiment": BASE, "sweep": {"gpu.power_limit_w": [300, 100]},
        "execution": {"simulated_gpus": {"settings_permitted": False}}})
    plan = expand(s)
    kwargs = {"origin": "s.yaml", "model_base": tmp_path, "dataset_base": tmp_path}
    at_start = check_study(s, plan, None, **kwargs)
    planned = check_study(s, plan, None, at_start=False, **kwargs)
    out_of_range = [e for e in at_start.errors if "gpu.power_limit_w 100 W" in e]
    assert out_of_range and out_of_range[0] in planned.errors  # the study's own mistake
    assert any("cannot be changed on GPU 0" in e for e in at_start.errors)
    assert not any("cannot be changed" in e for e in planned.errors)
    assert any("cannot be changed on GPU 0" in w and "a start on this machine would refuse it"
               in w for w in planned.warnings)


@pytest.mark.parametrize("execution", [
    {"simulated_gpus": {"settings_permitted": False}},  # out of range, and not permitted
    {},  # device cuda, and this host has no NVML (a login node)
])
def test_a_slurm_study_leaves_its_gpu_settings_to_the_nodes(tmp_path: Path,
                                                            execution: dict[str, object]) -> None:
    from harness.controller.preflight import check_study

    experiment = BASE if execution else {**BASE, "device": "cuda"}
    local = Study.model_validate({
        "name": "pl", "experiment": experiment, "sweep": {"gpu.power_limit_w": [300, 100]},
        "execution": execution})
    slurm = local.model_copy(update={"execution": Execution.model_validate(
        {**execution, "executor": "slurm", "slurm": {"time": "10"}})})
    kwargs = {"origin": "s.yaml", "model_base": tmp_path, "dataset_base": tmp_path}
    at_start = check_study(local, expand(local), None, **kwargs)
    assert any("gpu: settings" in e or "gpu.power_limit_w" in e for e in at_start.errors)
    on_slurm = check_study(slurm, expand(slurm), None, **kwargs)
    assert not any("gpu" in e.lower() for e in on_slurm.errors + on_slurm.warnings), \
        on_slurm.errors + on_slurm.warnings


# --- around a run in the study loop ---------------------------------------------------------


class SettingsRuntime:
    """A runtime that records what the GPUs hold while the run is in flight, then ends it."""

    name = "stub"

    def __init__(self, state: Path, outcome: object) -> None:
        self.state = state
        self.outcome = outcome
        self.seen: list[tuple[int, int, int]] = []

    def model_path_for_agent(self, job: object) -> str:
        return "m"

    def gpu_library_for_agent(self, job: object) -> object:
        return job.gpu_library  # type: ignore[attr-defined]

    def dataset_path_for_agent(self, d: object) -> str:
        return ""

    def prepare(self, image: str) -> None:
        return None

    def run(self, job: object) -> object:
        self.seen.append(held(self.state, 1))
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    def stop(self) -> None: ...


def study_run(tmp_path: Path, runtime: SettingsRuntime, **sim: object):  # type: ignore[no-untyped-def]
    from harness.controller.loop import StudyRun
    from harness.results.manifest import new_manifest

    s = Study.model_validate({
        "name": "pl", "experiment": {**BASE, "gpu": {"power_limit_w": 300, "sm_clock_mhz": 990}},
        "execution": {"gpus": [1], "simulated_gpus": {"count": 2, **sim}}})
    plan = expand(s)
    file = tmp_path / "study.yaml"
    file.write_text("name: pl\n")
    return StudyRun(s, plan, tmp_path, runtime, new_manifest(plan, file)), plan  # type: ignore[arg-type]


@pytest.mark.parametrize("outcome", [
    "timeout", "agent_error", "crash"])
def test_settings_hold_during_the_run_and_are_restored_however_it_ends(
        tmp_path: Path, outcome: str) -> None:
    from harness.controller.runtimes.base import RunOutcome
    from harness.results.io import read_model
    from harness.results.schema import RunSpec

    state = tmp_path / "simulated-gpus"
    ends = {
        "timeout": RunOutcome(exit_code=None, duration_s=1.0, timed_out=True,
                              reason=FailureReason.TIMEOUT, error="timed out"),
        "agent_error": RunOutcome(exit_code=1, duration_s=1.0, reason=FailureReason.AGENT_ERROR,
                                  error="agent failed"),
        "crash": RuntimeError("the runtime broke"),
    }
    runtime = SettingsRuntime(state, ends[outcome])
    loop, plan = study_run(tmp_path, runtime)
    if outcome == "crash":
        with pytest.raises(RuntimeError):
            loop.run_one(plan.runs[0])
    else:
        record = loop.run_one(plan.runs[0])
        assert record.status == "failed"
        assert record.gpu_settings is not None and record.gpu_settings.restored is True
        spec = read_model(next(tmp_path.glob("runs/*/config.json")), RunSpec)
        assert spec.gpu_settings is not None
        assert spec.gpu_settings.gpus[0].applied.power_limit_w == 300.0
    assert runtime.seen == [(300_000, 990, 0)]  # held while the run was in flight
    assert held(state, 1) == (700_000, 0, 0)  # and restored after it
    assert loop.manifest.gpu_journal == []


def test_a_run_whose_settings_are_refused_never_starts(tmp_path: Path) -> None:
    runtime = SettingsRuntime(tmp_path / "simulated-gpus", None)
    loop, plan = study_run(tmp_path, runtime, settings_permitted=False)
    record = loop.run_one(plan.runs[0])
    assert runtime.seen == []
    assert record.status == "failed" and record.reason == FailureReason.GPU_SETTINGS_FAILED
    assert "needs root" in (record.message or "")


def test_runs_in_parallel_lose_no_journal_entry() -> None:
    # runs at once (execution.max_parallel) journal their GPU changes from several threads
    import sys
    import threading

    m = manifest()
    journal = ManifestJournal(m, lambda: None)
    template = GpuJournalEntry(run_id="r0", controller_pid=1, written_at="t",
                               requested=GpuSettings(power_limit_w=300), gpus=[])

    def add_many(worker: int) -> None:
        for i in range(300):
            journal.add(template.model_copy(update={"run_id": f"w{worker}-{i}"}))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=add_many, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert len(journal.entries()) == 8 * 300
