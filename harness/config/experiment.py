"""The experiment: one deployment configuration to measure."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, to_jsonable_python

from harness.backends import registry
from harness.backends.spec import ID_OMIT_DEFAULT, BackendOptions, BackendSpec, Device, Precision
from harness.config.canonical import id_of, member_text, value_text
from harness.config.gpu import GpuSettings
from harness.config.problems import model_of
from harness.config.serving import Mode, Serving, Slo


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Workload(_Strict):
    """Which prompts are sent and how many tokens each request generates."""

    dataset: str = Field(
        "synthetic", description="synthetic | path to a .jsonl file with a 'prompt' field"
    )
    num_prompts: int = Field(64, ge=1, le=1_000_000)
    input_tokens: int = Field(
        128, ge=1, le=1_000_000, description="exact prompt length (synthetic) or truncation"
    )
    output_tokens: int = Field(
        128, ge=1, le=1_000_000, description="tokens generated per request, EOS ignored"
    )
    seed: int = 42

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str) -> str:
        if value == "synthetic" or value.endswith(".jsonl"):
            return value
        if value.startswith("hf:"):
            raise ValueError(
                "Hugging Face datasets are not read directly; export the prompts to a .jsonl "
                "file with one {\"prompt\": ...} object per line"
            )
        raise ValueError("expected 'synthetic' or a path ending in .jsonl")


class Decoding(_Strict):
    """Sampling parameters; temperature 0 means greedy."""

    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0)


class Measurement(_Strict):
    """How the agent measures: baseline, warmup, window, sampling."""

    warmup_batches: int = Field(3, ge=0, le=10_000)
    warmup_until_cv: float | None = Field(
        None, gt=0, lt=1, description="warm up until batch-latency CV falls below this"
    )
    warmup_max_batches: int = Field(20, ge=1, le=10_000)
    baseline_s: float = Field(10.0, ge=0, le=3600)
    min_window_s: float = Field(10.0, ge=0, le=86_400)
    sample_interval_ms: int = Field(100, ge=10, le=10_000)
    prefill_split: bool = True
    # added with results schema 1.1 (docs/methodology.md, section 1); left out of ids at default
    loaded_idle_s: float = Field(10.0, ge=0, le=3600, json_schema_extra=ID_OMIT_DEFAULT,
                                 description="loaded-idle baseline: model resident, engine idle")
    gpu_min_window_s: float = Field(30.0, ge=0, le=86_400, json_schema_extra=ID_OMIT_DEFAULT,
                                    description="on GPU, windows last at least this long too")
    min_counter_updates: int = Field(100, ge=0, le=1_000_000, json_schema_extra=ID_OMIT_DEFAULT,
                                     description="on GPU, energy-counter updates per window")
    max_window_s: float = Field(600.0, gt=0, le=86_400, json_schema_extra=ID_OMIT_DEFAULT,
                                description="a window ends at the first pass boundary after this")
    steady_tolerance: float = Field(0.05, gt=0, lt=1, json_schema_extra=ID_OMIT_DEFAULT,
                                    description="first- and second-half mean power may differ by")
    warmup_until_steady: bool = Field(False, json_schema_extra=ID_OMIT_DEFAULT,
                                      description="warm up until power and temperature settle")
    warmup_settle_s: float = Field(5.0, gt=0, le=3600, json_schema_extra=ID_OMIT_DEFAULT,
                                   description="length of each settling step")
    warmup_settle_c: float = Field(1.0, gt=0, le=50, json_schema_extra=ID_OMIT_DEFAULT,
                                   description="settled: temperature moved at most this much")
    warmup_max_s: float = Field(300.0, gt=0, le=86_400, json_schema_extra=ID_OMIT_DEFAULT,
                                description="the settling warmup stops after this long")


class ExperimentBase(_Strict):
    """One experiment: model, engine, device, precision, batch size, workload, options.

    The options block of each backend (``NAME: {...}``) is a field added by
    ``Experiment`` from the backend registry; use ``options`` and ``block`` to read them.
    """

    model: str = Field(min_length=1, description="hub id (read from the mounted cache) or path")
    backend: str = Field(default_factory=registry.default_name,
                         description="the inference engine: a registered backend (`harness "
                         "doctor` lists them, docs/backends.md describes them)")
    device: Device = "cuda"
    precision: Precision = "bf16"
    batch_size: int = Field(1, ge=1, le=65_536)
    workload: Workload = Workload()
    decoding: Decoding = Decoding()
    measurement: Measurement = Measurement()
    # serving mode (docs/serving.md); left out of ids at their defaults
    mode: Mode = Field("offline", json_schema_extra=ID_OMIT_DEFAULT,
                       description="offline batches, or an OpenAI-compatible server under load")
    serving: Serving = Field(Serving(), json_schema_extra=ID_OMIT_DEFAULT)
    slo: Slo = Field(Slo(), json_schema_extra=ID_OMIT_DEFAULT)
    # power limit and locked clocks (docs/gpu-control.md); left out of ids while unset
    gpu: GpuSettings = Field(GpuSettings(), json_schema_extra=ID_OMIT_DEFAULT)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value in registry.names():
            return value
        if value in registry.broken():
            raise ValueError(registry.unknown_backend(value))
        expected = " or ".join(
            [", ".join(repr(n) for n in registry.names()[:-1]), repr(registry.names()[-1])]
        ) if len(registry.names()) > 1 else repr(registry.names()[0])
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )

    @model_validator(mode="after")
    def _backend_can_do_it(self) -> ExperimentBase:
        problems = self.spec.problems(self, self.options) + self._mode_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _mode_problems(self) -> list[str]:
        """Settings that the experiment's mode does not use."""
        if self.mode == "offline":
            given = self.model_fields_set  # a field not given holds its default: nothing to compare
            if "serving" not in given and "slo" not in given:
                return []
            defaults = _neutral_defaults(type(self))
            unused = [n for n in ("serving", "slo") if getattr(self, n) != defaults[n]]
            return [f"the {' and '.join(unused)} settings apply to mode: serving only (set "
                    "mode: serving, or move them to the experiments that serve)"] if unused else []
        found = []
        if self.batch_size != 1:
            found.append("batch_size does not apply to mode: serving (the server batches the "
                         "requests it holds, up to the limit its engine's options set)")
        if self.workload.dataset != "synthetic":
            found.append("in mode: serving, requests come from serving.dataset; "
                         "workload.dataset must stay synthetic")
        return found

    @property
    def spec(self) -> BackendSpec:
        """What the registry knows about this experiment's backend."""
        return registry.get(self.backend)

    def block(self, name: str) -> BackendOptions | None:
        """The options block given for backend ``name`` (None when absent)."""
        value = getattr(self, name, None)
        return value if isinstance(value, BackendOptions) else None

    def foreign_blocks(self) -> list[str]:
        """Options blocks given for backends other than this experiment's."""
        return [n for n in registry.names() if n != self.backend and self.block(n) is not None]

    @property
    def options(self) -> BackendOptions:
        """The active backend's options, defaults filled in."""
        return self.block(self.backend) or self.spec.default_options()

    def gpus_per_run(self) -> int:
        """GPUs one run of this experiment uses (0 on the CPU)."""
        return self.options.gpus_per_run() if self.device == "cuda" else 0

    def resolved(self) -> Self:
        """This experiment with only its own backend's options block, defaults filled in."""
        if self.block(self.backend) is not None and not self.foreign_blocks():
            return self
        blocks: dict[str, Any] = {name: None for name in registry.names()}
        blocks[self.backend] = self.options
        return self.model_copy(update=blocks)

    def canonical_json(self) -> str:
        """The resolved config as canonical JSON (sorted keys, no whitespace).

        Fields marked ``ID_OMIT_DEFAULT`` are left out while at their default (the blocks of
        backends added after the built-in ones, optional settings added later): adding a
        backend or a setting does not change existing experiments' ids.
        """
        return id_text(self.resolved())

    @cached_property
    def id(self) -> str:
        """A short stable hash of the canonical resolved config (computed once per instance)."""
        return id_of(self.canonical_json())

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, as pydantic makes it; a copy with changed fields drops the cached id."""
        copied = super().model_copy(update=update, deep=deep)
        if update:
            copied.__dict__.pop("id", None)
        return copied


def id_text(value: BaseModel, dumped: dict[str, Any] | None = None) -> str:
    """What an id hashes: a resolved experiment's (or one of its parts') canonical JSON.

    The one rule for ids: the JSON-mode dump less the fields marked ``ID_OMIT_DEFAULT`` that
    hold their defaults, at every level, as canonical JSON. A caller that has ``value``'s dump
    passes it as ``dumped`` (never changed here).
    """
    if dumped is None:
        dumped = value.model_dump(mode="json", exclude_none=False)
    return value_text(_id_form(value, dumped))


def field_text(model: type[BaseModel], name: str, value: Any, dumped: Any) -> str:
    """One field's member of its model's id text ('' where ids leave the field out).

    ``value`` is the field's value and ``dumped`` its JSON-mode dump; the id text of a model
    is its fields' members in sorted order (``canonical.object_text``).
    """
    form = _field_form(model, name, value, dumped)
    return "" if form is _LEFT_OUT else member_text(name, value_text(form))


_LEFT_OUT = object()


def _id_form(value: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """``value``'s dump as ids encode it: marked fields at their defaults left out."""
    model = type(value)
    form = dumped
    for name in _marked(model):  # the others are as dumped
        if name in dumped:
            if form is dumped:
                form = dict(dumped)
            f = _field_form(model, name, getattr(value, name, None), dumped[name])
            if f is _LEFT_OUT:
                del form[name]
            else:
                form[name] = f
    return form


def _field_form(model: type[BaseModel], name: str, value: Any, dumped: Any) -> Any:
    """A field's dump as ids encode it, or _LEFT_OUT where they leave it out."""
    neutral = _neutral_dumps(model)
    if name in neutral and dumped == neutral[name]:
        return _LEFT_OUT
    if (name in _fields_with_neutral_parts(model) and isinstance(value, BaseModel)
            and isinstance(dumped, dict)):
        return _id_form(value, dumped)
    return dumped


@cache
def _neutral_dumps(model: type[BaseModel]) -> dict[str, Any]:
    """JSON-mode dumps of the defaults of ``model``'s ID_OMIT_DEFAULT fields.

    Compared with an experiment's dump, which is cheaper than comparing models.
    """
    return {name: to_jsonable_python(default)
            for name, default in _neutral_defaults(model).items()}


@cache
def _neutral_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The fields of ``model`` marked ID_OMIT_DEFAULT, with their defaults.

    Made once: a default's deep copy per experiment was most of the time planning took.
    """
    return {name: info.get_default(call_default_factory=True)
            for name, info in model.model_fields.items()
            if info.json_schema_extra == ID_OMIT_DEFAULT}


@cache
def _marked(model: type[BaseModel]) -> tuple[str, ...]:
    """Fields of ``model`` that ids may leave out, or that hold a sub-model with such fields."""
    return tuple(dict.fromkeys([*_neutral_dumps(model), *_fields_with_neutral_parts(model)]))


@cache
def _fields_with_neutral_parts(model: type[BaseModel]) -> frozenset[str]:
    """Fields of ``model`` holding a sub-model that has marked fields somewhere inside."""
    found = set()
    for name, info in model.model_fields.items():
        sub = model_of(info.annotation)
        if sub is not None and (_neutral_defaults(sub) or _fields_with_neutral_parts(sub)):
            found.add(name)
    return frozenset(found)


def _with_backend_blocks() -> type[ExperimentBase]:
    """The experiment model: ExperimentBase plus one optional options field per backend."""
    fields: dict[str, Any] = {}
    for spec in registry.specs():
        extra = None if spec.null_block_in_id else ID_OMIT_DEFAULT
        fields[spec.name] = (
            spec.options | None,
            Field(None, description=f"options of backend {spec.name!r}", json_schema_extra=extra),
        )
    return create_model(  # type: ignore[no-any-return, call-overload]
        "Experiment", __base__=ExperimentBase, __module__=__name__, **fields
    )


if TYPE_CHECKING:
    Experiment = ExperimentBase
else:
    Experiment = _with_backend_blocks()


Order = Literal["sequential", "interleaved", "shuffled"]
Runner = Literal["auto", "docker", "local"]
#: how a model's files are fingerprinted (harness.model_identity): sampled, or every byte
FingerprintMode = Literal["fast", "full"]
