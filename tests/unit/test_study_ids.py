"""The experiment ids of every file under studies/ are pinned: results name their runs by them.

The values were computed on main before expansion was restructured; a change to how a config
is resolved, dumped or hashed shows up here. A new file under studies/ must be added below.
"""

from pathlib import Path

import pytest

from harness.config.load import load_experiment, plan_study

STUDIES = Path(__file__).resolve().parents[2] / "studies"

#: study file -> the ids of its planned experiments, in plan order
STUDY_IDS = {
    "backends-cpu.yaml": [
        "7c8adc2879", "8ef8c3b62f", "c58f395e5b", "916b7cb858", "9a1cdd1fb9", "749a3a5781",
    ],
    "demo.yaml": ["0eb5b1cc45", "1222289dc5", "01f9817224", "782c7733ee"],
    "own-prompts-cpu.yaml": ["29960e9faf", "a12b928319", "a7adf0152a", "3f15b4d854"],
    # gpu.power_limit_w sweeps (docs/gpu-control.md)
    "power-limit.yaml": ["124905ece5", "c737d40718", "4aa2bc5c1e", "c2cb5e6f39"],
    "power-limit-sim.yaml": ["d8eef30383", "f434134697", "3a11125b5a", "f020d5765f"],
    "serving.yaml": [
        "d367a97aa7", "72f49672cc", "8e5bad1497", "f4469d8eeb", "7aea300d28", "b4a0f3b57b",
        "3d680bec3d", "35d8d80d65",
    ],
    "serving-cpu.yaml": ["e11cd837b9", "970cbf6923", "6f8d003e19", "fc279afb78"],
    "sweep.yaml": [
        "b9dd75b592", "3e44345b87", "8b8da02daf", "d22edee87a", "70094f37ab", "c6f50eb388",
        "28164d76a4", "ae4d081b7d", "5137952fd1", "5120b88a53", "3219be9024", "54e753e90d",
        "721e525698", "b706efaa1b", "2d4e608138", "bb266292f0", "106d3dd0a4", "c78b8b37f8",
        "59485b693a",
    ],
}
#: single-experiment file -> its id
EXPERIMENT_IDS = {
    "experiment-cpu.yaml": "71e5b385e6",
    "experiment-cuda.yaml": "9eed4c85df",
    "experiment-prompts-cpu.yaml": "4ea4e7954e",
    "experiment-tensorrt-llm.yaml": "a7bc3b19b0",
    "experiment-vllm-cpu.yaml": "ddfc490175",
    "experiment-vllm-cuda.yaml": "8f21b8cf5f",
}


def test_every_file_under_studies_is_pinned():
    assert {p.name for p in STUDIES.glob("*.yaml")} == set(STUDY_IDS) | set(EXPERIMENT_IDS)


@pytest.mark.parametrize("name", sorted(STUDY_IDS))
def test_study_ids_are_pinned(name):
    _, plan = plan_study(STUDIES / name)
    assert [p.id for p in plan.experiments] == STUDY_IDS[name]
    assert all(p.experiment.id == p.id for p in plan.experiments)


@pytest.mark.parametrize("name", sorted(EXPERIMENT_IDS))
def test_experiment_ids_are_pinned(name):
    assert load_experiment(STUDIES / name).id == EXPERIMENT_IDS[name]
