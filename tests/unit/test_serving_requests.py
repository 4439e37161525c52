"""Serving requests: lengths, tokens and send times from the seed; JSONL and ShareGPT files."""

import json
import random
import statistics
from pathlib import Path

import pytest

from harness.agent.serving.requests import (
    arrival_offsets,
    draw_lengths,
    file_request_tokens,
    plan_requests,
    requests_sha256,
    synthetic_requests,
    warmup_requests,
)
from harness.config.datasets import FIELDS, content_problem, field_of
from harness.config.experiment import Experiment
from harness.config.request_files import FileRequest, file_requests
from harness.config.serving import Lengths, Serving
from harness.controller.datasets import resolve_files
from harness.errors import UserInputError


def exp(serving=None, **workload) -> Experiment:
    return Experiment(model="/m", backend="vllm", device="cpu", precision="fp32", mode="serving",
                      workload={"input_tokens": 64, "output_tokens": 32, **workload},
                      serving={"num_requests": 200, **(serving or {})})


def test_synthetic_requests_are_the_seeds():
    a = synthetic_requests(exp(), 100, [0, 1])
    assert a == synthetic_requests(exp(), 100, [0, 1])
    assert a != synthetic_requests(exp(seed=7), 100, [0, 1])
    assert len(a) == 200 and all(len(p) == 64 and out == 32 for p, out in a)
    assert not {0, 1} & {t for p, _ in a for t in p} and max(t for p, _ in a for t in p) < 100


def test_length_distributions_stay_in_their_bounds():
    rng = random.Random(1)
    uniform = draw_lengths(Lengths(distribution="uniform", spread=0.5), 100, 4000, rng)
    assert min(uniform) == 50 and max(uniform) == 150
    assert abs(statistics.mean(uniform) - 100) < 2
    logn = draw_lengths(Lengths(distribution="lognormal", spread=0.5), 100, 4000, rng)
    assert 1 <= min(logn) and max(logn) <= Lengths(distribution="lognormal", spread=0.5).bounds(100)[1]
    assert abs(statistics.median(logn) - 100) < 5  # the median is the workload's length
    e = exp({"input_length": {"distribution": "uniform", "spread": 0.25},
             "output_length": {"distribution": "lognormal", "spread": 0.3}})
    pairs = synthetic_requests(e, 100, [])
    assert {len(p) for p, _ in pairs} <= set(range(48, 81)) and len({len(p) for p, _ in pairs}) > 10
    assert len({out for _, out in pairs}) > 10


def test_poisson_arrivals_are_scaled_to_the_target_rate():
    offsets = arrival_offsets(Serving(request_rate=4.0, num_requests=400), 400, 42)
    assert offsets is not None and offsets == sorted(offsets)
    assert offsets[-1] == pytest.approx(100.0)  # num_requests / request_rate
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
    cv = statistics.pstdev(gaps) / statistics.mean(gaps)
    assert 0.85 < cv < 1.15  # exponential gaps: CV 1
    assert offsets != arrival_offsets(Serving(request_rate=4.0), 400, 43)


def test_gamma_burstiness_sets_the_gaps_spread():
    for shape in (0.25, 4.0):
        offsets = arrival_offsets(Serving(request_rate=2.0, arrival="gamma", burstiness=shape),
                                  2000, 1)
        gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
        cv = statistics.pstdev(gaps) / statistics.mean(gaps)
        assert cv == pytest.approx(shape ** -0.5, rel=0.15)  # gamma: CV = 1 / sqrt(shape)


def test_closed_loop_and_all_at_once():
    assert arrival_offsets(Serving(concurrency=4), 5, 1) is None
    assert arrival_offsets(Serving(), 3, 1) == [0.0, 0.0, 0.0]
    planned = plan_requests(exp({"concurrency": 2}), [([1], 3), ([2], 4)])
    assert [p.at_s for p in planned] == [None, None] and planned[1].output_tokens == 4


def test_the_requests_hash_names_prompts_lengths_and_times():
    pairs = synthetic_requests(exp(), 50, [])
    a = plan_requests(exp({"request_rate": 2}), pairs)
    assert requests_sha256(a) == requests_sha256(plan_requests(exp({"request_rate": 2}), pairs))
    assert requests_sha256(a) != requests_sha256(plan_requests(exp({"request_rate": 3}), pairs))


def test_warmup_requests_are_apart_from_the_loads():
    e = exp({"warmup_requests": 3})
    warm = warmup_requests(e, 100, [])
    assert len(warm) == 3 and all(len(w.prompt) == 64 and w.at_s == 0.0 for w in warm)
    assert warm[0].prompt not in [p for p, _ in synthetic_requests(e, 100, [])]


def sharegpt() -> bytes:
    return json.dumps([
        {"id": "a", "conversations": [{"from": "human", "value": "Hi there"},
                                      {"from": "gpt", "value": "Hello, how can I help?"}]},
        {"id": "b", "conversations": [{"from": "system", "value": "be brief"},
                                      {"from": "human", "value": "Name a colour"},
                                      {"from": "gpt", "value": "Blue"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "no reply"}]},
        {"id": "d", "conversations": [{"from": "gpt", "value": "reply first"},
                                      {"from": "human", "value": "  "}]},
    ]).encode()


def test_sharegpt_takes_the_first_human_turn_and_its_reply():
    got = file_requests(sharegpt(), "chat.json")
    assert got == [FileRequest("Hi there", reply="Hello, how can I help?"),
                   FileRequest("Name a colour", reply="Blue")]


def test_jsonl_requests_carry_an_optional_output_length():
    data = b'{"prompt": "a", "output_tokens": 5}\n\n{"prompt": "b"}\n{"prompt": "  "}\n'
    assert file_requests(data, "r.jsonl") == [FileRequest("a", 5), FileRequest("b")]
    for bad, message in ((b'{"prompt": "a", "output_tokens": 0}\n', "at least 1"),
                         (b'{"prompt": "a", "output_tokens": true}\n', "whole number"),
                         (b'{"text": "a"}\n', "line 1: no \"prompt\" string"),
                         (b'not json\n', "line 1: not JSON")):
        with pytest.raises(UserInputError, match=message):
            file_requests(bad, "r.jsonl")
    with pytest.raises(UserInputError, match="not JSON"):
        file_requests(b"[", "chat.json")


def test_file_requests_encode_and_take_the_replys_length():
    e = exp({"num_requests": 2, "dataset": "chat.json"})
    encode = lambda text: [ord(c) for c in text.strip()]  # noqa: E731 - one token per character
    got = file_request_tokens(e, file_requests(sharegpt(), "chat.json"), encode, "chat.json")
    assert got == [([ord(c) for c in "Hi there"], len("Hello, how can I help?")),
                   ([ord(c) for c in "Name a colour"], 4)]
    jsonl = file_request_tokens(exp({"num_requests": 2, "dataset": "r.jsonl"}),
                                [FileRequest("ab", 7), FileRequest("c")], encode, "r.jsonl")
    assert jsonl == [([97, 98], 7), ([99], 32)]  # without output_tokens: the workload's
    with pytest.raises(UserInputError, match=r"has 2 usable requests \(a prompt and a reply "
                       r"that encode to tokens\), the experiment asks for 3"):
        file_request_tokens(exp({"num_requests": 3, "dataset": "chat.json"}),
                            file_requests(sharegpt(), "chat.json"), encode, "chat.json")


def test_a_requests_file_is_resolved_checked_and_hashed_like_a_prompts_file(tmp_path: Path):
    assert [f.path for f in FIELDS] == ["workload.dataset", "serving.dataset"]
    (tmp_path / "chat.json").write_bytes(sharegpt())
    ok = exp({"num_requests": 2, "dataset": "chat.json"})
    found = resolve_files([ok], tmp_path, "study.yaml")
    assert found.errors == [] and found.files[0].field == "serving.dataset"
    assert found.files[0].path == str(tmp_path / "chat.json")
    too_many = resolve_files([exp({"num_requests": 3, "dataset": "chat.json"})], tmp_path, "s")
    assert "has 2 usable requests (non-blank), the experiment asks for 3 " \
           "(serving.num_requests)" in too_many.errors[0]
    missing = resolve_files([exp({"num_requests": 1, "dataset": "gone.jsonl"})], tmp_path, "s")
    assert "no such requests file" in missing.errors[0]
    assert content_problem(field_of("serving.dataset"), b"{}", "x.json", 1).startswith("x.json:")
