"""A Docker engine that goes away mid-study, with a fake engine client (the real one: test_faults).

The fake client answers like the docker SDK while ``engine.up`` and raises requests'
ConnectionError (what the SDK raises when the socket is gone) while it is down. The Docker
runtime, the launcher, the wait and the run loop around it are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.config.study import Study
from harness.config.sweep import expand
from harness.controller.engine import wait_for_engine
from harness.controller.loop import StudyRun
from harness.controller.runtimes.base import RunJob
from harness.controller.runtimes.docker import DockerRuntime
from harness.errors import EngineUnavailable
from harness.results import events
from harness.results import manifest as mio
from harness.results.reasons import FailureReason


class Engine:
    """The state of a fake Docker engine: up or down, its containers, and a clock."""

    def __init__(self) -> None:
        self.up = True
        self.now = 0.0
        self.down_during_wait = True
        self.down_at_remove = False
        self.back_after_s: float | None = None  # when it answers again after going down
        self.containers: list[Container] = []
        self.removed: list[str] = []
        self.closed = 0  # pooled connections dropped by the client
        self.goes_again = 0  # times it answers a ping, then goes again at the next request

    def check(self) -> None:
        if not self.up:
            raise requests.exceptions.ConnectionError("('Connection aborted.', "
                                                      "FileNotFoundError(2, 'No such file'))")

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.back_after_s is not None and self.now >= self.back_after_s:
            self.up = True


class Container:
    def __init__(self, engine: Engine, cid: str, kwargs: dict[str, Any]) -> None:
        self.engine, self.id, self.status = engine, cid, "created"
        user = kwargs["user"]
        self.attrs = {
            "Created": "2020-01-01T00:00:00.000000000Z",
            "Config": {"User": user, "Labels": kwargs["labels"]},
            "HostConfig": {"NetworkMode": kwargs["network_mode"], "CapDrop": kwargs["cap_drop"],
                           "SecurityOpt": kwargs["security_opt"],
                           "PidsLimit": kwargs["pids_limit"], "Privileged": False},
            "Mounts": [{"Source": src, "Destination": spec["bind"], "RW": spec["mode"] == "rw"}
                       for src, spec in kwargs["volumes"].items()],
            "State": {"OOMKilled": False},
        }

    def start(self) -> None:
        self.engine.check()
        self.status = "running"

    def wait(self, timeout: float | None = None) -> dict[str, int]:
        self.engine.check()
        if self.status == "running" and self.engine.down_during_wait:
            # the engine stops: it stops the container (SIGTERM: the agent exits 130), then goes
            self.status = "exited"
            self.engine.up = False
            self.engine.down_during_wait = False
            self.engine.check()
        self.status = "exited"
        return {"StatusCode": 130}

    def reload(self) -> None:
        self.engine.check()

    def logs(self, **kwargs: Any) -> bytes:
        self.engine.check()
        return b"[agent] run: stopped by signal SIGTERM\n"

    def stop(self, timeout: float | None = None) -> None:
        self.engine.check()
        self.status = "exited"

    def remove(self, force: bool = False) -> None:
        if self.engine.down_at_remove:
            self.engine.up = self.engine.down_at_remove = False
        self.engine.check()
        self.engine.containers.remove(self)
        self.engine.removed.append(self.id)


class Client:
    """The parts of docker.DockerClient the runtime uses."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        client = self

        class Images:
            def get(self, tag: str) -> Any:
                client.engine.check()
                return type("Image", (), {"id": "sha256:" + "0" * 64, "attrs": {}})()

        class Containers:
            def create(self, image: str, **kwargs: Any) -> Container:
                client.engine.check()
                container = Container(client.engine, f"c{len(client.engine.removed)}" + "0" * 11,
                                      kwargs)
                client.engine.containers.append(container)
                return container

            def list(self, **kwargs: Any) -> list[Container]:
                client.engine.check()
                if client.engine.goes_again and not client.engine.down_during_wait:
                    client.engine.goes_again -= 1
                    client.engine.up = False
                    client.engine.back_after_s = client.engine.now + 3
                    client.engine.check()
                return list(client.engine.containers)

        self.images = Images()
        self.containers = Containers()

    def ping(self) -> bool:
        self.engine.check()
        return True

    def close(self) -> None:
        self.engine.closed += 1


def study_run(tmp_path: Path, engine: Engine, wait_s: float,
              seen: list[events.Event]) -> StudyRun:
    model = tmp_path / "model"
    model.mkdir()
    study = Study(name="gone", experiment={"model": str(model), "device": "cpu"},
                  sweep={"batch_size": [1, 2]},
                  execution={"engine_wait_s": wait_s, "order": "sequential"})
    plan = expand(study)
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "study.yaml").write_text("name: gone\n")
    manifest = mio.new_manifest(plan, study_dir / "study.yaml")
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path / "cache")
    return StudyRun(study, plan, study_dir, runtime, manifest, observer=seen.append,
                    sleep=engine.sleep)


def test_the_wait_ends_when_the_engine_answers_again(tmp_path):
    engine = Engine()
    engine.up, engine.back_after_s = False, 5.0
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path)
    seen: list[events.Event] = []
    assert wait_for_engine(runtime, 60, seen.append, sleep=engine.sleep, clock=lambda: engine.now)
    waits = [e for e in seen if isinstance(e, events.EngineWaiting)]
    assert len(waits) == 3 and [w.waited_s for w in waits] == [0.0, 2.0, 4.0]
    assert all(w.limit_s == 60 and "stopped answering" in w.message for w in waits)


def test_the_wait_gives_up_after_its_limit(tmp_path):
    engine = Engine()
    engine.up = False
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path)
    with pytest.raises(EngineUnavailable, match="ConnectionError"):
        runtime.reconnect()
    seen: list[events.Event] = []
    assert not wait_for_engine(runtime, 7, seen.append, sleep=engine.sleep,
                               clock=lambda: engine.now)
    assert engine.now == 7  # the last pause is cut to the limit
    assert not wait_for_engine(runtime, 60, seen.append, sleep=engine.sleep,
                               clock=lambda: engine.now, stopping=lambda: True)


def job_in(run_dir: Path) -> RunJob:
    run_dir.mkdir()
    return RunJob(run_id="r-c1", study="s", run_dir=run_dir, image="img", model_host_path=None,
                  model_ref="m", hf_cache=None, gpus=[], device="cpu", timeout_s=600)


def test_a_run_in_flight_when_the_engine_goes(tmp_path):
    engine = Engine()
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path)
    job = job_in(tmp_path / "r-c1")
    outcome = runtime.run(job)  # no raw ConnectionError, even from the clean-up
    assert outcome.reason == FailureReason.ENGINE_UNAVAILABLE
    assert outcome.container_id and "stopped answering" in (outcome.error or "")
    assert len(engine.containers) == 1, "left for the reaper: the engine could not remove it"
    engine.up = True
    (orphan,) = runtime.find_orphans("s")
    assert orphan.run_id == "r-c1" and not orphan.running
    assert runtime.reap(orphan) == (130, b"[agent] run: stopped by signal SIGTERM\n")
    assert engine.containers == []


def test_an_engine_that_goes_as_the_run_ends(tmp_path):
    engine = Engine()
    engine.down_during_wait, engine.down_at_remove = False, True
    runtime = DockerRuntime(client=Client(engine), cache_dir=tmp_path)
    run_dir = tmp_path / "r-c1"
    outcome = runtime.run(job_in(run_dir))
    assert outcome.exit_code == 130 and outcome.reason == FailureReason.ENGINE_UNAVAILABLE
    assert "as the run ended" in (outcome.error or "")
    assert (run_dir / "container.log").is_file() and len(engine.containers) == 1


@pytest.mark.parametrize("goes_again", [0, 1], ids=["back", "back-gone-back"])
def test_the_study_goes_on_once_the_engine_is_back(tmp_path, goes_again):
    engine = Engine()
    engine.back_after_s = 4.0
    engine.goes_again = goes_again  # a restart under way: answers, goes, answers for good
    seen: list[events.Event] = []
    run = study_run(tmp_path, engine, 120, seen)
    first, second = (r.run_id for r in run.plan.runs)
    final = run.execute()
    assert final.state == "incomplete"  # the fake agent writes no result: not aborted
    rec = final.record(first)
    assert (rec.status, rec.reason, rec.exit_code) == ("failed", "engine_unavailable", 130)
    assert "exited with code 130" in (rec.message or "") and rec.container_id
    run_dir = run.dir / "runs" / first
    assert "stopped by signal SIGTERM" in (run_dir / "container.log").read_text()
    error = json.loads((run_dir / "error.json").read_text())
    assert error["reason"] == "engine_unavailable" and error["where"] == "controller"
    assert final.record(second).attempts == 1  # the study went on
    assert engine.containers == [], "what the restart left was reaped"
    waits = [e for e in seen if isinstance(e, events.EngineWaiting)]
    assert len(waits) == 2 + 2 * goes_again  # 2 s apart: 4 s, then 3 s more
    assert engine.closed >= len(waits), "each ping is made on a new connection"
    assert mio.load(run.dir).state == "incomplete"


def test_the_study_stops_cleanly_when_the_engine_stays_away(tmp_path):
    engine = Engine()
    seen: list[events.Event] = []
    run = study_run(tmp_path, engine, 10, seen)
    first, second = (r.run_id for r in run.plan.runs)
    final = run.execute()
    assert final.state == "aborted"
    assert "engine_wait_s" in (final.message or "")
    assert f"harness study resume {run.dir}" in (final.message or "")
    assert (final.record(first).status, final.record(first).reason) == (
        "failed", "engine_unavailable")
    assert final.record(second).status == "pending"
    assert mio.load(run.dir).model_dump() == final.model_dump()
    assert not (run.dir / ".reserve").exists() and not (run.dir / ".controller.lock").exists()
    aborted = [e for e in seen if isinstance(e, events.StudyAborted)]
    assert len(aborted) == 1 and aborted[0].message == final.message
    waited = [e.waited_s for e in seen if isinstance(e, events.EngineWaiting)]
    assert waited and max(waited) < 10
