"""The grid's fast build gives exactly what validating each combination's plain dict gives."""

import copy
import json
import math

import pytest
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

import harness.config.grid as grid_module
from harness.config.canonical import id_of, member_text, object_text, value_text
from harness.config.experiment import Experiment, Measurement, id_text
from harness.config.grid import Grid
from harness.config.model_facts import independent_blocks, plain_serialization
from harness.config.paths import get_path
from harness.config.study import Study
from harness.config.sweep import expand
from harness.errors import UserInputError

CPU = {"model": "m", "device": "cpu", "precision": "fp32"}
GRIDS = {
    "scalar-axes": (CPU, {"batch_size": [1, 8], "precision": ["fp32", "fp16", "fp8"]}),
    "block-axes": (CPU, {"workload.num_prompts": [1, 2], "measurement.warmup_batches": [0, 3],
                         "decoding.temperature": [0.0, math.inf]}),
    "backends-and-scoped-axes": (
        {**CPU, "vllm": {"max_num_seqs": 8}},
        {"backend": ["pytorch", "vllm", "tensorrt_llm"], "vllm.max_num_seqs": [4, 16],
         "pytorch.attn_implementation": ["sdpa", "eager"], "device": ["cpu", "cuda"]},
    ),
    "active-block-given": (
        {**CPU, "backend": "vllm", "vllm": {"max_model_len": 150}},
        {"workload.input_tokens": [16, 60], "vllm.dtype": [None, "float32", "bfloat16"]},
    ),
    "whole-block-then-field": (
        {**CPU, "workload": {"dataset": "hf:squad"}},
        {"workload": [{"num_prompts": 3}, {"dataset": "p.jsonl"}], "workload.seed": [1, 2]},
    ),
    "explicit-null-block": ({**CPU, "pytorch": None}, {"batch_size": [1, 2]}),
    "strings-coerced": (CPU, {"batch_size": ["8", 9, "x"]}),
    # "300" validates to a new int each time: the memo's value is not the combination's
    "new-values-each-time": (CPU, {"batch_size": ["300", 301], "workload.seed": [1, 2]}),
    "block-not-a-mapping": ({**CPU, "decoding": "greedy"}, {"batch_size": [1]}),
    "foreign-block-not-a-mapping": ({**CPU, "vllm": [1]}, {"batch_size": [1]}),
    "invalid-foreign-block": ({**CPU, "vllm": {"max_num_seqs": 0}}, {"batch_size": [1]}),
    "unknown-key": ({**CPU, "batchsize": 2}, {"batch_size": [1]}),
    "backend-axis-not-a-name": (CPU, {"backend": ["pytorch", ["vllm"]]}),
    "no-axes": (CPU, {}),
}

#: the grids that plan (in the others some combination is invalid)
VALID = {"block-axes", "new-values-each-time", "whole-block-then-field", "explicit-null-block", "no-axes"}


def plain(grid: Grid, point) -> Experiment | None:
    try:
        return Experiment.model_validate(grid.data(point)).resolved()
    except ValidationError:
        return None


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_build_is_validation_of_the_plain_dict(name):
    base, sweep = GRIDS[name]
    before = copy.deepcopy((base, sweep))
    grid = Grid(base, sweep)
    for point in grid.points():
        expected = plain(grid, point)
        built = grid.build(point)
        where = grid.where(point)
        if expected is None:
            assert built is None, where
            continue
        assert built is not None, f"{where}: the fast build refused a valid experiment"
        assert built.experiment.model_dump() == expected.model_dump(), where
        assert built.dumped == expected.model_dump(mode="json", exclude_none=False), where
        assert built.text == id_text(expected), where
        assert id_of(built.text) == expected.id, where
        if built.params is not None:
            expected_dump = expected.model_dump(mode="json", exclude_none=False)
            assert built.params == {a: get_path(expected_dump, a) for a in sweep}, where
            assert list(built.params) == list(sweep), where
    assert (base, sweep) == before, "building the grid changed the study"


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_plans_name_the_same_ids_as_the_experiments(name):
    base, sweep = GRIDS[name]
    study = Study.model_validate({"name": "g", "experiment": base, "sweep": sweep})
    try:
        plan = expand(study)
    except UserInputError:  # the messages are test_bad_studies' subject
        assert name not in VALID
        return
    assert name in VALID
    for planned in plan.experiments:
        fresh = Experiment.model_validate(planned.experiment.model_dump())
        assert planned.id == fresh.id == planned.experiment.id


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": "é\u2028\"x\"", "c": None, "d": True, "e": 1.5, "f": math.inf, "g": -0.0},
        {"z": {"y": [1, 2.0, "3"], "x": {}}, "a": [], "m": 10**30},
    ],
)
def test_canonical_text_made_of_members_is_the_plain_text(data):
    plain_text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert object_text(member_text(k, value_text(data[k])) for k in sorted(data)) == plain_text


def test_an_id_text_is_the_canonical_dump_less_the_fields_at_their_neutral_defaults():
    exp = Experiment.model_validate({**CPU, "measurement": {"max_window_s": 60}})
    dumped = exp.resolved().model_dump(mode="json", exclude_none=False)
    for name in ("mode", "serving", "slo", "gpu"):  # marked, and at their defaults
        dumped.pop(name)
    marked = [k for k, info in Measurement.model_fields.items() if info.json_schema_extra]
    assert "max_window_s" in marked
    for name in marked:  # all but max_window_s at their defaults
        if name != "max_window_s":
            dumped["measurement"].pop(name)
    assert exp.canonical_json() == json.dumps(dumped, sort_keys=True, separators=(",", ":"))


def test_the_fast_build_encodes_shared_values_once_and_falls_back_where_they_differ(monkeypatch):
    in_full = []
    real = grid_module._in_full
    monkeypatch.setattr(grid_module, "_in_full", lambda exp: in_full.append(exp) or real(exp))
    grid = Grid(*GRIDS["block-axes"])
    assert all(grid.build(point) is not None for point in grid.points())
    assert in_full == []
    undumped = Grid(*GRIDS["block-axes"], dumps=False)  # a study without exclude rules
    for point in grid.points():
        made, lean = grid.build(point), undumped.build(point)
        assert lean.dumped is None and (lean.text, lean.params) == (made.text, made.params)
    grid = Grid(*GRIDS["new-values-each-time"])
    built = [grid.build(point) for point in grid.points()]
    assert all(b is not None for b in built)
    assert len(in_full) == 1  # ("300", 2): its batch_size is not the object ("300", 1) gave


class Inner(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int = 0


class Checked(BaseModel):
    a: Inner = Inner()
    b: Inner | None = None
    c: Inner = Inner()
    d: int = 0

    @field_validator("c")
    @classmethod
    def _c(cls, value: Inner) -> Inner:
        return value


class RawValidator(BaseModel):
    a: Inner = Inner()

    @model_validator(mode="before")
    @classmethod
    def _raw(cls, data: object) -> object:
        return data


class Serialised(BaseModel):
    a: Inner = Inner()

    @field_serializer("a")
    def _a(self, value: Inner) -> int:
        return value.x


def test_only_blocks_that_validate_on_their_own_are_pre_validated():
    assert set(independent_blocks(Checked)) == {"a", "b"}
    assert independent_blocks(RawValidator) == {}
    assert set(independent_blocks(Experiment)) >= {"workload", "decoding", "measurement"}


def test_a_custom_serialisation_turns_the_cheap_dump_off():
    assert plain_serialization(Checked.__pydantic_core_schema__)
    assert not plain_serialization(Serialised.__pydantic_core_schema__)
    assert plain_serialization(Experiment.__pydantic_core_schema__)
