"""Which host GPUs a run gets.

For now one run at a time gets every GPU of ``execution.gpus``; a GPU pool that gives each run
exactly what its engine uses (and runs on disjoint GPUs at once) replaces ``assign_gpus``.
"""

from __future__ import annotations

from harness.config.experiment import Experiment
from harness.config.study import Execution


def assign_gpus(execution: Execution, experiment: Experiment) -> list[int]:
    """The host GPU indices a run of ``experiment`` gets: all of ``execution.gpus``."""
    return list(execution.gpus)
