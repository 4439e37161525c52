"""A backend that lives outside harness/: registered through the entry-point group only.

It proves that adding a backend needs no edit under harness/ (tests/integration/
test_plugin_backend.py). Its engine is deliberately simple: it "generates" tokens with a fixed
pause per decoding step, so a study of it measures the harness, not a model.
"""

from pydantic import Field

from harness.backends.spec import BackendOptions, BackendSpec


class ToyOptions(BackendOptions):
    """Options of the toy backend."""

    step_ms: float = Field(1.0, gt=0, le=1000, description="pause per decoding step")


SPEC = BackendSpec(
    name="toy",
    summary="a test backend living under tests/plugins (fixed pause per step)",
    options=ToyOptions,
    engine="toy_backend.engine:ToyEngine",
    precisions={"cpu": ("fp32",)},
    timestamp_source="engine_step",
)
