"""Which host GPUs a run gets: exactly what its engine uses, the first ones of execution.gpus.

``Execution.gpus_per_run`` says how many (tensor x pipeline parallel; on simulated GPUs
``simulated_gpus.per_run``); a plan that needs more than ``execution.gpus`` lists is refused
when it is made (``Execution.placement_problem``). A pool that runs on disjoint GPUs at once
replaces ``assign_gpus`` later (issue 13).
"""

from __future__ import annotations

from harness.config.experiment import Experiment
from harness.config.study import Execution
from harness.errors import UserInputError


def assign_gpus(execution: Execution, experiment: Experiment) -> list[int]:
    """The host GPU indices (NVML order) a run of ``experiment`` gets."""
    why = execution.placement_problem(experiment)
    if why is not None:
        raise UserInputError(why)
    return list(execution.gpus[: execution.gpus_per_run(experiment)])
