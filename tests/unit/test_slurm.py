"""The Slurm executor with a scripted Slurm: config, job files, states, tracking, re-attach."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml

from harness.config.load import plan_study
from harness.config.slurm import SlurmOptions
from harness.config.study import Execution
from harness.controller.lifecycle import resume_study, start_study
from harness.controller.slurm.commands import JobState, SlurmCli, parse_scontrol
from harness.controller.slurm.executor import SlurmStudy, refresh
from harness.controller.slurm.job import (
    NODE_RECORD,
    NodeRecord,
    gpus_for_job,
    job_script,
    sbatch_args,
)
from harness.controller.slurm.node import assigned_gpus
from harness.controller.slurm.states import base_state, is_live, reason_for
from harness.controller.slurm.track import settle
from harness.errors import Interrupted, RunFailure, UserInputError
from harness.models import write_tiny_model
from harness.results import manifest as mio
from harness.results.io import atomic_write_json
from harness.results.reasons import FailureReason
from harness.results.schema import RunRecord, SlurmJob

# -- config ------------------------------------------------------------------------------------


def test_executor_and_block_go_together():
    assert Execution(executor="slurm", slurm={"time": "30"}).slurm.time == "30"
    with pytest.raises(ValueError, match="executor: slurm needs a slurm block"):
        Execution(executor="slurm")
    with pytest.raises(ValueError, match="execution.slurm is given but executor is local"):
        Execution(slurm={"time": "30"})


@pytest.mark.parametrize("time", ["30", "0:01:00", "1:30:00", "2-12", "2-12:30", "1-00:00:00",
                                  "90:00"])
def test_slurm_times_accepted(time):
    assert SlurmOptions(time=time).time == time


@pytest.mark.parametrize("time", ["", "1h", "1:2:3:4", "-1", "1-", "abc"])
def test_slurm_times_refused(time):
    with pytest.raises(ValueError, match="not a Slurm time limit"):
        SlurmOptions(time=time)


@pytest.mark.parametrize(("arg", "match"), [
    ("-p debug", "expected an sbatch option"),
    ("qos=high", "expected an sbatch option"),
    ("--output=x", "sets --output itself"),
    ("--dependency=afterok:1", "sets --dependency itself"),
])
def test_extra_args_are_long_options_the_executor_does_not_set(arg, match):
    with pytest.raises(ValueError, match=match):
        SlurmOptions(extra_args=[arg])
    assert SlurmOptions(extra_args=["--qos=high", "--exclusive"]).extra_args[1] == "--exclusive"


def test_setup_lines_are_single_lines():
    with pytest.raises(ValueError, match="one shell line per entry"):
        SlurmOptions(setup=["module load cuda\nrm -rf /"])


STUDY = {
    "name": "sl",
    "experiment": {
        "model": "models/tiny", "backend": "pytorch", "device": "cpu", "precision": "fp32",
        "batch_size": 1,
        "workload": {"dataset": "synthetic", "num_prompts": 2, "input_tokens": 8,
                     "output_tokens": 4},
    },
    "sweep": {"batch_size": [1, 2, 4]},
    "execution": {"runner": "local", "executor": "slurm",
                  "slurm": {"time": "0:05:00", "mem": "1G", "max_jobs": 2, "poll_s": 0.1}},
}


def write_study(tmp_path: Path, **execution) -> Path:
    data = yaml.safe_load(yaml.safe_dump(STUDY))
    data["execution"]["slurm"].update(execution)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_experiment_ids_do_not_depend_on_the_executor(tmp_path):
    slurm = write_study(tmp_path)
    data = yaml.safe_load(slurm.read_text())
    del data["execution"]
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump(data))
    assert [r.run_id for r in plan_study(slurm)[1].runs] == \
        [r.run_id for r in plan_study(local)[1].runs]


# -- the job -----------------------------------------------------------------------------------


def test_sbatch_args_ask_for_gpus_only_when_the_run_uses_them(tmp_path):
    opts = SlurmOptions(partition="gpu", account="proj", time="10", mem="4G",
                        extra_args=["--qos=high"])
    args = sbatch_args(opts, name="harness-s-r", run_dir=tmp_path, gpus=2, after="17")
    assert args[:3] == ["--job-name=harness-s-r", f"--output={tmp_path}/slurm-%j.out",
                        "--time=10"]
    for expected in ("--partition=gpu", "--account=proj", "--mem=4G", "--gres=gpu:2",
                     "--dependency=afterany:17"):
        assert expected in args
    assert args[-1] == "--qos=high"
    plain = sbatch_args(SlurmOptions(), name="n", run_dir=tmp_path, gpus=0)
    assert not [a for a in plain if a.startswith(("--gres", "--partition", "--dependency",
                                                  "--mem"))]


def test_gpus_per_job_default_from_the_engine(tmp_path):
    study, plan = plan_study(write_study(tmp_path))
    exp = plan.experiment(plan.runs[0].experiment_id)
    assert gpus_for_job(study.execution.slurm, study.execution, exp) == 0  # CPU run
    assert gpus_for_job(SlurmOptions(gpus_per_run=3), study.execution, exp) == 3


def test_job_script_runs_setup_then_the_node_side(tmp_path):
    text = job_script(SlurmOptions(setup=["module load cuda"], python="/opt/venv/bin/python"),
                      study_dir=tmp_path / "my study", run_id="abc-c1")
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines.index("module load cuda") < len(lines) - 1
    assert lines[-1] == (f"exec /opt/venv/bin/python -m harness.controller.slurm.node "
                         f"'{tmp_path}/my study' abc-c1")


def test_assigned_gpus():
    assert assigned_gpus({"SLURM_JOB_GPUS": "2,3"}, 2) == [2, 3]
    assert assigned_gpus({"CUDA_VISIBLE_DEVICES": "1"}, 1) == [1]
    assert assigned_gpus({}, 0) == []
    with pytest.raises(UserInputError, match="needs 2 GPUs but Slurm assigned"):
        assigned_gpus({"SLURM_JOB_GPUS": "0"}, 2)


# -- states ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("state", "reason"), [
    ("TIMEOUT", FailureReason.SLURM_TIMEOUT),
    ("OUT_OF_MEMORY", FailureReason.SLURM_OUT_OF_MEMORY),
    ("NODE_FAIL", FailureReason.SLURM_NODE_FAIL),
    ("PREEMPTED", FailureReason.SLURM_PREEMPTED),
    ("CANCELLED by 0", FailureReason.SLURM_CANCELLED),
    ("CANCELLED+", FailureReason.SLURM_CANCELLED),
])
def test_terminal_states_name_their_reason(state, reason):
    assert reason_for(state, has_record=True) is reason
    assert not is_live(state)


def test_completed_or_failed_defer_to_the_node_record():
    assert reason_for("COMPLETED", has_record=True) is None
    assert reason_for("FAILED", has_record=True) is None
    assert reason_for("FAILED", has_record=False) is FailureReason.SLURM_FAILED
    assert reason_for("COMPLETED", has_record=False) is FailureReason.SLURM_FAILED
    assert is_live("PENDING") and is_live("RUNNING") and base_state("RUNNING") == "RUNNING"


# -- a scripted Slurm --------------------------------------------------------------------------


class FakeSlurm:
    """sbatch/squeue/scontrol/scancel as a tiny in-memory scheduler (jobs run when polled)."""

    def __init__(self, study_dir: Path | None = None, *, polls_to_finish: int = 1,
                 final: str = "COMPLETED", write_record: bool = True) -> None:
        self.study_dir = study_dir
        self.jobs: dict[str, dict] = {}
        self.calls: list[list[str]] = []
        self.polls_to_finish = polls_to_finish
        self.final = final
        self.write_record = write_record
        self.max_live = 0

    def submit_job(self, run_id: str, state: str = "PENDING") -> str:
        job_id = str(100 + len(self.jobs))
        self.jobs[job_id] = {"run_id": run_id, "state": state, "polls": 0}
        return job_id

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        args = list(args)
        self.calls.append(args)
        out, rc = "", 0
        if args[0] == "sbatch":
            run_id = Path(args[-1]).parent.name
            out = self.submit_job(run_id) + "\n"
        elif args[0] == "squeue":
            self._advance()
            ids = args[args.index("-j") + 1].split(",")
            known = [j for j in ids if j in self.jobs]
            out = "".join(f"{j}|{self.jobs[j]['state']}|node1\n" for j in known)
            rc = 0 if known else 1
        elif args[0] == "scontrol":
            rc = 1  # squeue already said everything it knows
        elif args[0] == "sacct":
            rc = 1
        elif args[0] == "scancel":  # a job that already ended keeps its state
            for j in args[1:]:
                if is_live(self.jobs[j]["state"]):
                    self.jobs[j]["state"] = "CANCELLED"
        self.max_live = max(self.max_live, sum(is_live(j["state"]) for j in self.jobs.values()))
        return subprocess.CompletedProcess(args, rc, out, "")

    def _advance(self) -> None:
        for job_id, job in self.jobs.items():
            if not is_live(job["state"]):
                continue
            job["polls"] += 1
            job["state"] = "RUNNING"
            if job["polls"] > self.polls_to_finish:
                job["state"] = self.final
                if self.write_record and self.study_dir is not None:
                    write_node_record(self.study_dir, job["run_id"], job_id, "done")

    def sbatch_runs(self) -> list[str]:
        return [Path(c[-1]).parent.name for c in self.calls if c[0] == "sbatch"]


def write_node_record(study_dir: Path, run_id: str, job_id: str, status: str,
                      reason: FailureReason | None = None) -> None:
    rec = mio.load(study_dir).record(run_id).model_copy(
        update={"status": status, "reason": reason, "runner": "local", "duration_s": 1.0})
    atomic_write_json(study_dir / "runs" / run_id / NODE_RECORD,
                      NodeRecord(job_id=job_id, node="node1", gpus=[], record=rec))


@pytest.fixture(scope="module")
def model_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cwd")
    write_tiny_model(root / "models" / "tiny")
    return root


def prepared(tmp_path: Path, model_root: Path, monkeypatch, **slurm):
    monkeypatch.chdir(model_root)
    return start_study(write_study(tmp_path, **slurm), runner="local", output_dir=tmp_path / "out")


def executor(prep, fake: FakeSlurm, **kw) -> SlurmStudy:
    run = prep.run
    return SlurmStudy(run.study, run.plan, prep.study_dir, run.manifest, cli=SlurmCli(fake),
                      sleep=lambda s: None, **kw)


def test_every_run_is_submitted_once_with_at_most_max_jobs_live(tmp_path, model_root,
                                                                monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve(), polls_to_finish=2)
    final = executor(prep, fake).execute()
    assert final.state == "complete"
    assert sorted(fake.sbatch_runs()) == sorted(r.run_id for r in final.runs)
    assert fake.max_live == 2  # max_jobs
    for rec in final.runs:
        assert rec.slurm is not None and rec.slurm.node == "node1"
        assert rec.slurm.state == "COMPLETED" and rec.attempts == 1
        assert (prep.study_dir / "runs" / rec.run_id / "slurm-job.sh").is_file()


def test_detach_submits_all_chained_and_status_settles(tmp_path, model_root, monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve())
    final = executor(prep, fake, detach=True).execute()
    assert final.state == "running" and "harness study status" in (final.message or "")
    sbatch = [c for c in fake.calls if c[0] == "sbatch"]
    assert len(sbatch) == 3
    assert "--dependency=afterany:100" in sbatch[2]  # the third waits for the first (max_jobs 2)
    assert not any(a.startswith("--dependency") for a in sbatch[0] + sbatch[1])
    assert refresh(prep.study_dir, SlurmCli(fake)).state == "running"  # first poll: running
    for _ in range(3):
        manifest = refresh(prep.study_dir, SlurmCli(fake))
    assert manifest.state == "complete"
    assert [r.status for r in mio.load(prep.study_dir).runs] == ["done"] * 3


def test_resume_reattaches_to_live_jobs_and_submits_only_the_rest(tmp_path, model_root,
                                                                  monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve(), polls_to_finish=5)
    executor(prep, fake, detach=True).execute()
    manifest = mio.load(prep.study_dir)
    # the controller went away; one job ended meanwhile with TIMEOUT, one was done, one runs
    first, second, third = (r.run_id for r in manifest.runs)
    fake.jobs["100"]["state"] = "TIMEOUT"
    write_node_record(prep.study_dir, second, "101", "done")
    fake.jobs["101"]["state"] = "COMPLETED"
    fake.calls.clear()
    again = resume_study(prep.study_dir, runner="local")
    final = executor(again, fake).execute()
    assert fake.sbatch_runs() == [first]  # resubmitted; the live job was re-attached
    assert final.state == "complete"
    records = {r.run_id: r for r in final.runs}
    assert records[first].attempts == 2 and records[first].slurm.job_id == "103"
    assert records[second].attempts == 1 and records[third].slurm.job_id == "102"
    assert list((prep.study_dir / "runs" / ".attempts").iterdir())[0].name == f"{first}-attempt1"


def test_ctrl_c_cancels_the_jobs_and_marks_runs_interrupted(tmp_path, model_root, monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve(), polls_to_finish=100)
    study = executor(prep, fake)
    study.sleep = lambda s: study._stop.set()  # Ctrl+C during the first wait
    with pytest.raises(Interrupted, match="2 Slurm jobs cancelled"):
        study.execute()
    assert [c for c in fake.calls if c[0] == "scancel"] == [["scancel", "100", "101"]]
    statuses = [(r.status, r.reason) for r in mio.load(prep.study_dir).runs]
    assert statuses.count(("interrupted", FailureReason.INTERRUPTED)) == 2
    assert statuses.count(("pending", None)) == 1
    assert mio.load(prep.study_dir).state == "interrupted"


def test_ctrl_c_keeps_the_result_of_a_job_that_finished_just_before(tmp_path, model_root,
                                                                    monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve(), polls_to_finish=100)
    study = executor(prep, fake)
    finished = []

    def ctrl_c_after_a_job_ended(seconds):
        run_id = fake.jobs["100"]["run_id"]
        write_node_record(prep.study_dir, run_id, "100", "done")
        fake.jobs["100"]["state"] = "COMPLETED"  # it ended between the poll and Ctrl+C
        finished.append(run_id)
        study._stop.set()

    study.sleep = ctrl_c_after_a_job_ended
    with pytest.raises(Interrupted, match="1/3 runs done; 2 Slurm jobs cancelled; continue with"):
        study.execute()
    records = {r.run_id: r for r in mio.load(prep.study_dir).runs}
    done = records[finished[0]]
    assert (done.status, done.reason, done.slurm.state) == ("done", None, "COMPLETED")
    cancelled = records[fake.jobs["101"]["run_id"]]
    assert (cancelled.status, cancelled.reason) == ("interrupted", FailureReason.INTERRUPTED)
    assert "cancelled by this controller" in cancelled.message
    assert cancelled.slurm.state == "CANCELLED"
    fake.calls.clear()
    executor(resume_study(prep.study_dir, runner="local"), fake).execute()
    assert finished[0] not in fake.sbatch_runs() and len(fake.sbatch_runs()) == 2


def test_a_job_cancelled_here_that_slurm_forgot_is_interrupted(tmp_path):
    rec = running_record(tmp_path)
    settle(tmp_path, rec, None, cancelled_here=True)
    assert (rec.status, rec.reason) == ("interrupted", FailureReason.INTERRUPTED)
    other = running_record(tmp_path, "r2-c1")
    settle(tmp_path, other, None)
    assert (other.status, other.reason) == ("failed", FailureReason.SLURM_FAILED)


def test_status_names_the_input_to_fix_when_runs_failed_for_input(tmp_path, model_root,
                                                                  monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)
    fake = FakeSlurm(prep.study_dir.resolve(), polls_to_finish=100)
    executor(prep, fake, detach=True).execute()
    for job_id, job in fake.jobs.items():
        write_node_record(prep.study_dir, job["run_id"], job_id, "failed",
                          FailureReason.MODEL_NOT_FOUND if job_id == "100" else None)
        job["state"] = "FAILED" if job_id == "100" else "COMPLETED"
    fake.polls_to_finish = 0
    manifest = refresh(prep.study_dir, SlurmCli(fake))
    assert manifest.state == "incomplete"
    assert manifest.message.startswith("3 runs not done; runs failed for input reasons "
                                       "(model_not_found)")
    assert "--file FIXED.yaml --force" in manifest.message


def test_sbatch_refusals_stop_the_study(tmp_path, model_root, monkeypatch):
    prep = prepared(tmp_path, model_root, monkeypatch)

    def refuse(args):
        return subprocess.CompletedProcess(args, 1, "", "sbatch: error: invalid partition")

    study = executor(prep, FakeSlurm())
    study.cli = SlurmCli(refuse)
    study.study = study.study.model_copy(update={"execution": study.study.execution.model_copy(
        update={"max_consecutive_failures": 2})})
    final = study.execute()
    assert final.state == "aborted" and "invalid partition" in (final.message or "")
    reasons = [r.reason for r in final.runs]
    assert reasons.count(FailureReason.SLURM_SUBMIT_FAILED) == 2


# -- settling one run --------------------------------------------------------------------------


def running_record(study_dir: Path, run_id: str = "r1-c1", job_id: str = "7") -> RunRecord:
    (study_dir / "runs" / run_id).mkdir(parents=True, exist_ok=True)
    return RunRecord(run_id=run_id, experiment_id="r1", cycle=1, position=0, status="running",
                     attempts=1, slurm=SlurmJob(job_id=job_id))


def test_timeout_overrides_the_nodes_interrupted_record(tmp_path):
    rec = running_record(tmp_path)
    node_rec = rec.model_copy(update={"status": "interrupted",
                                      "reason": FailureReason.INTERRUPTED,
                                      "message": "stopped by SIGTERM", "container_id": "c0ffee"})
    atomic_write_json(tmp_path / "runs" / rec.run_id / NODE_RECORD,
                      NodeRecord(job_id="7", node="n3", gpus=[], record=node_rec))
    settle(tmp_path, rec, JobState("7", "TIMEOUT", "n3"))
    assert (rec.status, rec.reason) == ("failed", FailureReason.SLURM_TIMEOUT)
    assert rec.container_id == "c0ffee" and rec.slurm.node == "n3"
    assert "ended TIMEOUT" in rec.message and "stopped by SIGTERM" in rec.message


def test_the_gpus_their_uuids_and_settings_come_from_the_node(tmp_path):
    from harness.config.gpu import GpuSettings
    from harness.results.gpusettings import GpuApplied, GpuSettingsRecord, GpuValues

    rec = running_record(tmp_path)
    applied = GpuSettingsRecord(
        requested=GpuSettings(power_limit_w=300), restored=True, restored_by="controller",
        gpus=[GpuApplied(index=i, uuid=f"GPU-{i}", previous=GpuValues(power_limit_w=700.0),
                         applied=GpuValues(power_limit_w=300.0)) for i in (2, 3)])
    node_rec = rec.model_copy(update={"status": "done", "gpu_uuids": ["GPU-2", "GPU-3"],
                                      "gpu_settings": applied})
    atomic_write_json(tmp_path / "runs" / rec.run_id / NODE_RECORD,
                      NodeRecord(job_id="7", node="n3", gpus=[2, 3], record=node_rec))
    settle(tmp_path, rec, JobState("7", "COMPLETED", "n3"))
    assert rec.status == "done"
    assert rec.gpus == [2, 3] and rec.gpu_uuids == ["GPU-2", "GPU-3"]
    assert rec.gpu_settings == applied


def test_failed_job_without_record_quotes_its_output(tmp_path):
    rec = running_record(tmp_path)
    (tmp_path / "runs" / rec.run_id / "slurm-7.out").write_text("Traceback\nImportError: x\n")
    settle(tmp_path, rec, JobState("7", "FAILED", "n1", "ExitCode 1:0"))
    assert (rec.status, rec.reason) == ("failed", FailureReason.SLURM_FAILED)
    assert "ImportError: x" in rec.message and "ExitCode 1:0" in rec.message


def test_a_record_of_another_job_is_ignored(tmp_path):
    rec = running_record(tmp_path)
    done = rec.model_copy(update={"status": "done"})
    atomic_write_json(tmp_path / "runs" / rec.run_id / NODE_RECORD,
                      NodeRecord(job_id="6", node="n1", gpus=[], record=done))
    settle(tmp_path, rec, None)
    assert (rec.status, rec.reason) == ("failed", FailureReason.SLURM_FAILED)
    assert "no longer knows job 7" in rec.message


# -- the command line tools --------------------------------------------------------------------


def scripted(replies: dict[str, tuple[int, str]]):
    calls = []

    def run(args):
        calls.append(list(args))
        rc, out = replies.get(args[0] + ("-c" if "-c" in args else ""), (1, ""))
        return subprocess.CompletedProcess(args, rc, out, "error")

    return run, calls


def test_query_falls_back_to_scontrol_then_the_completion_log():
    line = ("JobId=7 JobName=x JobState=TIMEOUT Reason=TimeLimit Dependency=(null) "
            "NodeList=n2 ExitCode=0:15")
    run, calls = scripted({"squeue": (1, ""), "scontrol": (0, line)})
    assert SlurmCli(run).query(["7"]) == {
        "7": JobState("7", "TIMEOUT", "n2", "Reason TimeLimit, ExitCode 0:15")}
    run, calls = scripted({"squeue": (1, ""), "sacct-c": (0, "7|COMPLETED|n4\n")})
    assert SlurmCli(run).query(["7"])["7"].state == "COMPLETED"
    assert [c[0] for c in calls] == ["squeue", "scontrol", "sacct", "sacct"]
    run, _ = scripted({})
    assert SlurmCli(run).query(["7"]) == {}


def test_submit_reads_the_job_id_and_names_a_refusal(tmp_path):
    run, calls = scripted({"sbatch": (0, "4242;cluster\n")})
    assert SlurmCli(run).submit(["--time=1"], tmp_path / "job.sh") == "4242"
    assert calls[0] == ["sbatch", "--parsable", "--time=1", str(tmp_path / "job.sh")]
    run, _ = scripted({"sbatch": (1, "")})
    with pytest.raises(RunFailure, match="sbatch refused the job: error") as info:
        SlurmCli(run).submit([], tmp_path / "job.sh")
    assert info.value.reason is FailureReason.SLURM_SUBMIT_FAILED


def test_parse_scontrol():
    assert parse_scontrol("JobId=1 JobState=RUNNING NodeList=a[1-2]")["NodeList"] == "a[1-2]"


def test_detach_is_refused_for_a_local_study(tmp_path, model_root, monkeypatch):
    from harness.cli.slurm import check_detach

    data = yaml.safe_load(yaml.safe_dump(STUDY))
    data["execution"] = {"runner": "local"}
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(model_root)
    prep = start_study(path, runner="local", output_dir=tmp_path / "out")
    with pytest.raises(UserInputError, match="--detach needs execution.executor: slurm"):
        check_detach(prep, True)
    check_detach(prep, False)


def test_a_submit_host_without_docker_still_starts_a_slurm_study(tmp_path, model_root,
                                                                 monkeypatch):
    from harness.controller import lifecycle
    from harness.errors import EnvironmentProblem

    def no_engine(choice):
        raise EnvironmentProblem("no Docker engine answers")

    monkeypatch.setattr(lifecycle, "select_runtime", no_engine)
    monkeypatch.chdir(model_root)
    prep = start_study(write_study(tmp_path), runner="docker", output_dir=tmp_path / "out")
    assert prep.run.runtime.name == "local" and "no Docker engine answers" in prep.runner_why
    data = yaml.safe_load(yaml.safe_dump(STUDY))
    data["execution"] = {"runner": "docker"}
    local = tmp_path / "local.yaml"
    local.write_text(yaml.safe_dump(data))
    with pytest.raises(EnvironmentProblem):
        start_study(local, output_dir=tmp_path / "out2")


def test_a_slurm_study_with_gpu_settings_starts_where_they_cannot_be_set(tmp_path, model_root,
                                                                         monkeypatch):
    data = yaml.safe_load(yaml.safe_dump(STUDY))
    data["experiment"]["gpu"] = {"power_limit_w": 100}  # below the range; changes not permitted
    data["execution"]["simulated_gpus"] = {"settings_permitted": False}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(model_root)
    prep = start_study(path, runner="local", output_dir=tmp_path / "out")  # the nodes check
    assert not [n for n in prep.notes if "gpu" in n.lower()]
    assert resume_study(prep.study_dir, runner="local").run.pending()
    data["execution"] = {"runner": "local", "simulated_gpus": {"settings_permitted": False}}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserInputError) as info:
        start_study(path, runner="local", output_dir=tmp_path / "out")
    assert any("gpu.power_limit_w 100 W is outside" in p for p in info.value.problems)


def test_gpu_settings_a_killed_job_left_are_named_on_its_run(tmp_path):
    from harness.config.gpu import GpuSettings
    from harness.controller.gpucontrol import FileJournal
    from harness.controller.slurm.job import NODE_GPU_JOURNAL
    from harness.results.gpusettings import GpuJournalEntry, GpuPrevious

    rec = running_record(tmp_path)
    journal = FileJournal(tmp_path / "runs" / rec.run_id / NODE_GPU_JOURNAL)
    entry = GpuJournalEntry(run_id=rec.run_id, controller_pid=1, written_at="t",
                            requested=GpuSettings(power_limit_w=300),
                            gpus=[GpuPrevious(index=2, uuid="GPU-abc", power_limit_w=700.0)])
    journal.add(entry)
    assert journal.entries() == [entry]
    settle(tmp_path, rec, JobState("7", "NODE_FAIL", "n4"))
    assert rec.reason == FailureReason.SLURM_NODE_FAIL
    assert "before it restored its GPU settings" in rec.message and "node n4" in rec.message
    assert "GPU 2 (GPU-abc): power limit back to 700 W" in rec.message
    journal.remove(rec.run_id)  # a job that restored its settings leaves no file
    assert not journal.path.exists() and journal.entries() == []
    again = running_record(tmp_path)
    settle(tmp_path, again, JobState("7", "NODE_FAIL", "n4"))
    assert "GPU settings" not in (again.message or "")
