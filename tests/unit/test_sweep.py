import random

import pytest

from harness.config.experiment import Experiment
from harness.config.study import Study
from harness.config.sweep import expand, get_path, merge, order_runs
from harness.errors import UserInputError

BASE = {
    "model": "models/tiny",
    "backend": "pytorch",
    "device": "cuda",
    "precision": "bf16",
    "batch_size": 8,
    "vllm": {"max_num_seqs": 128},
}


def study(**kw):
    data = {"name": "t", "experiment": dict(BASE)}
    data.update(kw)
    return Study.model_validate(data)


def test_cartesian_product_counts_runs_and_cycles():
    plan = expand(
        study(sweep={"batch_size": [1, 8, 32], "precision": ["fp16", "bf16"]},
              execution={"cycles": 3})
    )
    assert len(plan.experiments) == 6
    assert len(plan.runs) == 18
    assert {(p.params["batch_size"], p.params["precision"]) for p in plan.experiments} == {
        (b, p) for b in (1, 8, 32) for p in ("fp16", "bf16")
    }


def test_backend_scoped_axis_applies_only_to_its_backend():
    plan = expand(
        study(sweep={"backend": ["pytorch", "vllm"], "vllm.max_num_seqs": [64, 256],
                     "batch_size": [1, 8]})
    )
    # pytorch: 2 batch sizes (the vllm axis collapses); vllm: 2 x 2
    assert len(plan.experiments) == 6
    pt = [p for p in plan.experiments if p.experiment.backend == "pytorch"]
    vl = [p for p in plan.experiments if p.experiment.backend == "vllm"]
    assert len(pt) == 2 and len(vl) == 4
    assert all(p.experiment.block("vllm") is None for p in pt)
    assert all(p.params["vllm.max_num_seqs"] is None for p in pt)
    assert {p.experiment.options.max_num_seqs for p in vl} == {64, 256}


def test_exclude_and_include():
    plan = expand(
        study(
            sweep={"batch_size": [1, 8], "precision": ["fp16", "bf16"]},
            exclude=[{"precision": "fp16", "batch_size": 1}],
            include=[{"backend": "vllm", "precision": "fp8", "batch_size": 32}],
        )
    )
    combos = {(p.experiment.backend, p.experiment.precision, p.experiment.batch_size)
              for p in plan.experiments}
    assert ("pytorch", "fp16", 1) not in combos
    assert ("vllm", "fp8", 32) in combos
    assert len(combos) == 4


def test_exclude_with_dotted_path():
    plan = expand(
        study(sweep={"backend": ["pytorch", "vllm"], "vllm.max_num_seqs": [64, 256]},
              exclude=[{"vllm.max_num_seqs": 64}])
    )
    assert sorted(
        (p.experiment.backend, get_path(p.experiment.model_dump(), "vllm.max_num_seqs"))
        for p in plan.experiments
    ) == [("pytorch", None), ("vllm", 256)]


def test_exclude_matching_nothing_is_a_warning():
    plan = expand(study(sweep={"batch_size": [1, 2]}, exclude=[{"batch_size": 64}]))
    assert any("matches no experiment" in w for w in plan.warnings)


def test_exclude_removing_everything_is_refused():
    with pytest.raises(UserInputError) as e:
        expand(study(sweep={"batch_size": [1, 2]}, exclude=[{"device": "cuda"}]))
    assert "exclude rules remove every experiment" in str(e.value)


def test_include_contradicting_exclude_is_refused():
    with pytest.raises(UserInputError) as e:
        expand(study(sweep={"batch_size": [1]}, exclude=[{"batch_size": 4}],
                     include=[{"batch_size": 4}]))
    assert "include[0]" in str(e.value) and "contradict" in str(e.value)


def test_unknown_sweep_path_is_refused_with_suggestion():
    with pytest.raises(UserInputError) as e:
        expand(study(sweep={"batchsize": [1]}), source="s.yaml")
    assert "s.yaml: sweep.batchsize: unknown field 'batchsize' (did you mean 'batch_size'?)" in str(e.value)


def test_oversized_plan_needs_confirmation():
    s = study(sweep={"batch_size": list(range(1, 41))}, execution={"cycles": 30})
    with pytest.raises(UserInputError) as e:
        expand(s)
    assert "1200 runs" in str(e.value) and "execution.max_runs" in str(e.value)
    ok = study(sweep={"batch_size": list(range(1, 41))},
               execution={"cycles": 30, "max_runs": 1200})
    assert len(expand(ok).runs) == 1200


def test_invalid_combination_names_the_field_and_combination():
    with pytest.raises(UserInputError) as e:
        expand(study(sweep={"precision": ["fp16", "fp8"]}), source="s.yaml")
    msg = str(e.value)
    assert "cannot run precision 'fp8'" in msg
    assert "precision='fp8'" in msg


def test_ids_are_stable_across_key_order_and_runs():
    a = Experiment.model_validate(
        {"model": "m", "batch_size": 4, "workload": {"input_tokens": 8, "output_tokens": 4}}
    )
    b = Experiment.model_validate(
        {"workload": {"output_tokens": 4, "input_tokens": 8}, "batch_size": 4, "model": "m"}
    )
    assert a.id == b.id
    # a known value: the id must not change between runs or releases by accident
    assert a.id == Experiment.model_validate(a.model_dump()).id
    assert len(a.id) == 10


def test_ids_ignore_other_backends_options_and_execution():
    a = Experiment.model_validate({"model": "m", "vllm": {"max_num_seqs": 3}}).resolved()
    b = Experiment.model_validate({"model": "m"}).resolved()
    assert a.id == b.id
    p1 = expand(study(execution={"cycles": 1, "seed": 1}))
    p2 = expand(study(execution={"cycles": 2, "seed": 9, "gap_s": 3}))
    assert p1.experiments[0].id == p2.experiments[0].id


def test_same_experiment_same_id_in_two_studies():
    p1 = expand(study(sweep={"batch_size": [1, 8]}))
    p2 = expand(Study.model_validate(
        {"name": "other", "experiment": {**BASE, "batch_size": 8}}))
    ids1 = {p.params["batch_size"]: p.id for p in p1.experiments}
    assert ids1[8] == p2.experiments[0].id


@pytest.mark.parametrize("order", ["sequential", "interleaved", "shuffled"])
def test_orders_cover_every_pair_once(order):
    from harness.config.study import Execution

    ex = Execution(cycles=3, order=order, seed=7)
    runs = order_runs(["a", "b", "c"], ex)
    assert sorted((r.experiment_id, r.cycle) for r in runs) == sorted(
        (e, c) for e in "abc" for c in (1, 2, 3)
    )
    assert [r.position for r in runs] == list(range(9))


def test_order_shapes():
    from harness.config.study import Execution

    seq = order_runs(["a", "b"], Execution(cycles=2, order="sequential"))
    assert [(r.experiment_id, r.cycle) for r in seq] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    inter = order_runs(["a", "b"], Execution(cycles=2, order="interleaved"))
    assert [(r.experiment_id, r.cycle) for r in inter] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_shuffled_is_seeded_and_cycle_blocked():
    from harness.config.study import Execution

    ids = [f"e{i}" for i in range(8)]
    one = order_runs(ids, Execution(cycles=3, order="shuffled", seed=5))
    two = order_runs(ids, Execution(cycles=3, order="shuffled", seed=5))
    other = order_runs(ids, Execution(cycles=3, order="shuffled", seed=6))
    assert [r.run_id for r in one] == [r.run_id for r in two]
    assert [r.run_id for r in one] != [r.run_id for r in other]
    assert [r.cycle for r in one] == [1] * 8 + [2] * 8 + [3] * 8
    rng = random.Random(5)
    block = list(ids)
    rng.shuffle(block)
    assert [r.experiment_id for r in one[:8]] == block


def test_merge_handles_dotted_and_nested_keys():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    assert merge(base, {"a.b": 5}) == {"a": {"b": 5, "c": 2}, "d": 3}
    assert merge(base, {"a": {"c": 9}}) == {"a": {"b": 1, "c": 9}, "d": 3}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


def test_plan_finds_experiments_by_id_and_a_changed_copy_forgets_the_index():
    plan = expand(study(sweep={"batch_size": [1, 8]}))
    first, second = plan.experiments
    assert plan.experiment(second.id) is second.experiment
    with pytest.raises(KeyError):
        plan.experiment("nope")
    narrowed = plan.model_copy(update={"experiments": [first]})
    assert narrowed.experiment(first.id) is first.experiment
    with pytest.raises(KeyError):
        narrowed.experiment(second.id)


def test_expansion_leaves_the_garbage_collector_as_it_found_it():
    import gc

    assert gc.isenabled()
    expand(study(sweep={"batch_size": [1, 8]}))
    assert gc.isenabled()
    gc.disable()
    try:
        expand(study(sweep={"batch_size": [1, 8]}))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_expansion_leaves_the_study_as_it_was():
    s = study(sweep={"workload": [{"num_prompts": 3}], "workload.seed": [1, 2]},
              include=[{"workload": {"seed": 9}}])
    before = s.model_dump()
    plan = expand(s)
    assert s.model_dump() == before
    assert sorted(p.experiment.workload.seed for p in plan.experiments) == [1, 2, 9]
