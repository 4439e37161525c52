"""Host-side cooldown between runs, with pynvml patched (autospec): no GPU on this machine."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pynvml
import pytest

from harness.controller.thermal import cooldown


class Host:
    """Temperatures the patched NVML reports; each sleep cools every GPU by ``cool_c``."""

    def __init__(self, temps: dict[int, float], cool_c: float = 5.0) -> None:
        self.temps = dict(temps)
        self.cool_c = cool_c
        self.now = 0.0
        self.init_error: int | None = None
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.temps = {i: t - self.cool_c for i, t in self.temps.items()}

    def clock(self) -> float:
        return self.now


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host({0: 70.0, 1: 52.0})

    def init() -> None:
        if h.init_error is not None:
            raise pynvml.NVMLError(h.init_error)

    def temperature(handle: int, sensor: int) -> int:
        return int(h.temps[handle])

    with mock.patch.object(pynvml, "nvmlInit", autospec=True, side_effect=init), \
         mock.patch.object(pynvml, "nvmlShutdown", autospec=True), \
         mock.patch.object(pynvml, "nvmlDeviceGetHandleByIndex", autospec=True,
                           side_effect=lambda i: i), \
         mock.patch.object(pynvml, "nvmlDeviceGetTemperature", autospec=True,
                           side_effect=temperature):
        yield h


def test_waits_until_every_gpu_is_below_the_target(host: Host) -> None:
    rec = cooldown("cuda", [0, 1], 50.0, 300, poll_s=2, sleep=host.sleep, clock=host.clock)
    assert rec["checked"] is True and rec["reached"] is True
    assert rec["start_temperatures_c"] == {"0": 70.0, "1": 52.0}
    assert rec["end_temperatures_c"] == {"0": 45.0, "1": 27.0}
    assert rec["waited_s"] == pytest.approx(10.0)
    assert host.slept == [2, 2, 2, 2, 2]


def test_gives_up_at_the_timeout_and_says_so(host: Host) -> None:
    host.cool_c = 0.5
    rec = cooldown("cuda", [0], 50.0, 5, poll_s=2, sleep=host.sleep, clock=host.clock)
    assert rec["reached"] is False
    assert rec["waited_s"] == pytest.approx(5.0)
    assert host.slept == [2, 2, 1]
    assert "after 5 s" in rec["reason"]


def test_without_a_target_only_records(host: Host) -> None:
    rec = cooldown("cuda", [1], None, 300, sleep=host.sleep, clock=host.clock)
    assert rec["checked"] is True and rec["reached"] is None
    assert rec["start_temperatures_c"] == {"1": 52.0}
    assert host.slept == []


def test_without_nvml_cooldown_is_recorded_as_unchecked(host: Host) -> None:
    host.init_error = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    rec = cooldown("cuda", [0], 50.0, 300, sleep=host.sleep, clock=host.clock)
    assert rec["checked"] is False and rec["reached"] is None
    assert rec["start_temperatures_c"] is None  # never a made-up temperature
    assert "could not be checked" in rec["reason"]
    assert host.slept == []


def test_cpu_runs_have_nothing_to_cool(host: Host) -> None:
    rec = cooldown("cpu", [0], 50.0, 300, sleep=host.sleep, clock=host.clock)
    assert rec["checked"] is False and "cpu" in rec["reason"]


def test_real_host_without_a_driver_is_unchecked() -> None:
    rec = cooldown("cuda", [0], 40.0, 1)
    if rec["checked"]:
        pytest.skip("this host has a working NVML")
    assert rec["reason"] and rec["start_temperatures_c"] is None


def test_study_run_records_the_cooldown_per_run(host: Host, tmp_path) -> None:
    from harness.config.study import Study
    from harness.config.sweep import expand
    from harness.controller.loop import StudyRun
    from harness.controller.runtimes.base import RunOutcome
    from harness.results.manifest import new_manifest
    from harness.results.reasons import FailureReason

    class NoRuntime:
        name = "stub"

        def model_path_for_agent(self, job) -> str:
            return "m"

        def prepare(self, image: str) -> None:
            return None

        def run(self, job) -> RunOutcome:
            return RunOutcome(exit_code=1, duration_s=0.0, reason=FailureReason.AGENT_ERROR,
                              error="not run")

        def stop(self) -> None: ...

    study = Study(
        name="cool",
        # a run spans both GPUs (tensor parallel 2), so both are cooled before it
        experiment={"model": "org/model", "device": "cuda", "backend": "vllm",
                    "vllm": {"tensor_parallel_size": 2}},
        execution={"gpus": [0, 1], "cooldown_to_c": 50, "cooldown_timeout_s": 600},
    )
    plan = expand(study)
    study_file = tmp_path / "study.yaml"
    study_file.write_text("name: cool\n")
    runner = StudyRun(
        study, plan, tmp_path, NoRuntime(), new_manifest(plan, study_file), sleep=host.sleep
    )
    record = runner.run_one(plan.runs[0])
    assert record.thermal["checked"] is True and record.thermal["reached"] is True
    assert record.thermal["start_temperatures_c"] == {"0": 70.0, "1": 52.0}
    assert record.thermal["cooldown_to_c"] == 50


def test_host_gpu_uuids_by_nvml_index():
    from unittest import mock

    import pynvml

    from harness.controller.thermal import host_gpu_uuids

    nvml = mock.create_autospec(pynvml)
    nvml.NVMLError = pynvml.NVMLError
    nvml.nvmlDeviceGetHandleByIndex.side_effect = lambda i: f"h{i}"
    nvml.nvmlDeviceGetUUID.side_effect = lambda h: f"GPU-{h}"
    assert host_gpu_uuids([1, 3], nvml=nvml) == ["GPU-h1", "GPU-h3"]
    nvml.nvmlShutdown.assert_called_once()
    assert host_gpu_uuids([], nvml=nvml) == []


def test_host_gpu_uuids_without_nvml_is_empty():
    from unittest import mock

    import pynvml

    from harness.controller.thermal import host_gpu_uuids

    nvml = mock.create_autospec(pynvml)
    nvml.NVMLError = pynvml.NVMLError
    nvml.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert host_gpu_uuids([0], nvml=nvml) == []
