"""A backend that serves but has no model: the fake server (``fake_serving.server``) behind it.

Registered through the entry-point group in tests that run the agent as a process
(tests/unit/test_serving_faults.py): serving mode's whole protocol, its faults and its
signals, without an engine. Its options are the fake server's knobs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from harness.backends.spec import BackendOptions, BackendSpec, ServerLaunch, ServingSupport

if TYPE_CHECKING:
    from harness.config.experiment import Experiment


class FakeServeOptions(BackendOptions):
    """The fake server's knobs."""

    step_s: float = Field(0.005, gt=0)
    max_running: int = Field(4, ge=1)
    burst: int = Field(1, ge=1)
    never_ready: bool = False
    crash_after: int | None = None
    error_every: int | None = None

    def max_running_requests(self) -> int | None:
        """The fake engine's batch limit."""
        return self.max_running


def launch(experiment: Experiment, model_path: str, port: int, folder: Path) -> ServerLaunch:
    """The fake server's command line."""
    o = experiment.options
    assert isinstance(o, FakeServeOptions)
    argv = [sys.executable, "-m", "fake_serving.server", "--port", str(port),
            "--step-s", str(o.step_s), "--max-running", str(o.max_running), "--burst", str(o.burst)]
    argv += ["--never-ready"] if o.never_ready else []
    argv += ["--crash-after", str(o.crash_after)] if o.crash_after is not None else []
    argv += ["--error-every", str(o.error_every)] if o.error_every is not None else []
    return ServerLaunch(argv=tuple(argv), model_name="fake", files={"launched.txt": "yes\n"})


SPEC = BackendSpec(
    name="fakeserve",
    summary="a fake OpenAI-compatible server under tests/plugins (serving tests)",
    options=FakeServeOptions,
    engine="toy_backend.engine:ToyEngine",
    precisions={"cpu": ("fp32",)},
    serving=ServingSupport(launch=launch, metrics_path="/metrics",
                           running_gauge="fake:num_requests_running"),
)
