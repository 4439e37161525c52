"""Serving mode's grammar: mode, serving and slo in experiments and sweeps; refusals at plan time."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from harness.config.experiment import Experiment
from harness.config.load import plan_study
from harness.config.serving import Lengths, Serving
from harness.errors import UserInputError

BASE = {"model": "/m", "backend": "vllm", "device": "cpu", "precision": "fp32"}


def exp(**fields) -> Experiment:
    return Experiment(**{**BASE, **fields})


def test_offline_is_the_default_and_serving_fields_at_their_defaults_change_no_id():
    plain = exp()
    assert plain.mode == "offline"
    assert exp(mode="offline", serving={}, slo={}).id == plain.id
    assert "serving" not in plain.canonical_json() and "slo" not in plain.canonical_json()
    serving = exp(mode="serving")
    assert serving.id != plain.id and '"mode":"serving"' in serving.canonical_json()
    assert exp(mode="serving", serving={"request_rate": 2}).id != serving.id


def test_a_backend_without_a_server_is_refused_naming_those_that_serve():
    with pytest.raises(ValidationError, match=r"backend 'pytorch' has no OpenAI-compatible "
                       r"server.*backends that serve: vllm, tensorrt_llm"):
        exp(backend="pytorch", mode="serving")


@pytest.mark.parametrize(("fields", "message"), [
    ({"serving": {"request_rate": 2}}, "the serving settings apply to mode: serving only"),
    ({"slo": {"ttft_s": 0.5}}, "the slo settings apply to mode: serving only"),
    ({"mode": "serving", "batch_size": 8}, "batch_size does not apply to mode: serving"),
    ({"mode": "serving", "workload": {"dataset": "p.jsonl"}}, "requests come from serving.dataset"),
    ({"mode": "serving", "serving": {"burstiness": 0.5}}, "burstiness shapes gamma arrivals"),
    ({"mode": "serving", "serving": {"arrival": "gamma"}}, "arrival: gamma needs a request_rate"),
    ({"mode": "serving", "serving": {"dataset": "x.csv"}}, "expected 'synthetic', a .jsonl"),
    ({"mode": "serving", "serving": {"dataset": "x.json", "input_length": {
        "distribution": "uniform"}}}, "input_length shape synthetic requests"),
    ({"mode": "serving", "serving": {"input_length": {"distribution": "uniform", "spread": 1}}},
     "a uniform spread must be below 1"),
])
def test_settings_the_mode_cannot_use_are_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        exp(**fields)


def test_length_bounds():
    assert Lengths().bounds(100) == (100, 100)
    assert Lengths(distribution="uniform", spread=0.5).bounds(100) == (50, 150)
    assert Lengths(distribution="uniform", spread=0.9).bounds(3) == (1, 6)
    low, high = Lengths(distribution="lognormal", spread=0.5).bounds(100)
    assert low == 1 and high == 449  # 100 x e^1.5, rounded up


def test_serving_fields_sweep_like_any_other(tmp_path: Path):
    study = {
        "name": "s", "experiment": {**BASE, "mode": "serving", "serving": {"num_requests": 8}},
        "sweep": {"serving.request_rate": [1, 2], "vllm.max_num_seqs": [2, 4],
                  "slo.ttft_s": [0.5]},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(study))
    _, plan = plan_study(path)
    got = {(e.experiment.serving.request_rate, e.experiment.options.max_running_requests())
           for e in plan.experiments}
    assert got == {(1, 2), (1, 4), (2, 2), (2, 4)}
    assert len({e.id for e in plan.experiments}) == 4
    assert all(e.experiment.serving.num_requests == 8 and e.experiment.slo.ttft_s == 0.5
               for e in plan.experiments)


def test_a_study_serving_with_pytorch_stops_at_plan_time(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "experiment": {**BASE, "mode": "serving"},
                                    "sweep": {"backend": ["vllm", "pytorch"]}}))
    with pytest.raises(UserInputError, match="has no OpenAI-compatible server"):
        plan_study(path)


def test_serving_defaults_are_a_poisson_open_loop_or_all_at_once():
    assert Serving().request_rate is None and Serving().concurrency is None
    assert Serving(arrival="gamma", request_rate=2, burstiness=0.5).burstiness == 0.5


@pytest.mark.parametrize(("fields", "text"), [
    ({}, "every request at once"),
    ({"concurrency": 4}, "a closed loop of 4"),
    ({"request_rate": 2.5}, "2.5 requests/s"),
    ({"request_rate": 8, "concurrency": 4}, "8 requests/s, at most 4 in flight"),
    ({"request_rate": 8, "arrival": "gamma", "burstiness": 0.5},
     "8 requests/s (gamma, burstiness 0.5)"),
])
def test_the_load_in_words(fields, text):
    assert Serving(**fields).load_text() == text
