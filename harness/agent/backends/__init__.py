"""A lazy registry of backends: importing this package imports no engine."""

from __future__ import annotations

import difflib
import importlib

from harness.agent.backends.base import Backend
from harness.config.backends import BACKENDS
from harness.config.experiment import Experiment
from harness.errors import EnvironmentProblem, UserInputError


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered under ``name``."""
    spec = BACKENDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(BACKENDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserInputError(f"unknown backend {name!r}{hint}")
    module_name, _, class_name = spec.agent_class.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvironmentProblem(
            f"backend {name!r} cannot be imported in this environment ({e}); "
            f"use the {spec.image} image or install the '{spec.image}' extra"
        ) from e
    cls = getattr(module, class_name)
    return cls


def create_backend(experiment: Experiment) -> Backend:
    """A backend instance for this experiment."""
    return backend_class(experiment.backend)(experiment)
