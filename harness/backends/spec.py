"""What the host knows about a backend: options model, capabilities and image recipe.

A backend package (``harness/backends/NAME/`` or a plug-in found through the
``harness.backends`` entry-point group) exports one ``BackendSpec``. Nothing here imports an
engine: the in-image engine is named by a ``module:Class`` string and imported only by the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

Device = Literal["cuda", "cpu"]
Precision = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
#: where a backend's per-token timestamps come from (recorded in every result)
TimestampSource = Literal["engine_step", "stream", "client", "none"]
#: a field whose value at its default is left out of experiment ids (added after ids of
#: results schema 1 existed, so those ids stay the same); options fields use it too
ID_OMIT_DEFAULT: dict[str, JsonValue] = {"id": "omit-default"}


class BackendOptions(BaseModel):
    """Base of every backend's options block (``experiment.NAME``): strict and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self, experiment: Experiment) -> list[str]:
        """Why these options cannot serve ``experiment`` (empty when they can)."""
        return []

    def gpus_per_run(self) -> int:
        """GPUs one run of these options spans (tensor x pipeline parallel)."""
        return 1

    def quantization_scheme_given(self) -> str | None:
        """The quantization scheme named in these options, if the backend has such a field."""
        return None

    def max_running_requests(self) -> int | None:
        """The most requests the engine runs in one batch, where these options bound it."""
        return None

    def prefill_interleaving(
        self, experiment: Experiment, batch_tokens: int, batch_size: int, token_budget: int | None
    ) -> str | None:
        """Why the engine would run part of a batch's prefill in steps that also decode.

        ``batch_tokens`` and ``batch_size`` are the largest batch's prompt tokens and requests,
        ``token_budget`` the prompt tokens the engine's scheduler takes per step when the
        engine knows it. None: each batch is prefilled before it decodes (static batches).
        """
        return None


def length_problem(field_name: str, limit: int | None, experiment: Experiment) -> list[str]:
    """A problem when a sequence-length limit is shorter than one request of the workload."""
    need = experiment.workload.input_tokens + experiment.workload.output_tokens
    if limit is not None and limit < need:
        return [
            f"{field_name} {limit} is shorter than one request "
            f"(input_tokens + output_tokens = {need})"
        ]
    return []


#: what Triton (engines' kernels, torch.compile) needs at run time to build its launchers: a C
#: compiler and the Python headers; installed where the base lacks them
COMPILER_PACKAGES = ("gcc", "libc6-dev", "python3-dev")


@dataclass(frozen=True)
class ImageVariant:
    """How a backend's image is built for one device, as arguments of the shared template.

    ``base`` is the FROM image of a build that can reach a registry; ``offline`` says whether
    the registry-less path (debootstrap base + host wheelhouse) can build it instead.
    """

    base: str
    extras: tuple[str, ...]
    pins: tuple[str, ...] = ()
    pip_args: str = ""
    offline: bool = True
    #: packages removed after the install (wheels built for another torch, say)
    uninstall: tuple[str, ...] = ()
    #: Debian packages installed when the base lacks the library they provide
    apt_packages: tuple[str, ...] = ()
    #: the vendor image's own entrypoint, kept in front of the agent (CUDA compat set-up)
    vendor_entrypoint: str = ""
    #: folders the image creates writable for any user (cache mounts)
    dirs: tuple[str, ...] = ()
    #: a Dockerfile of its own under images/, only where a vendor base truly differs
    dockerfile: str | None = None
    #: the CUDA runtime (major.minor) the engine inside was built for, the same on both paths;
    #: recorded in the image's labels, checked inside it and against the host's driver
    cuda: str | None = None

    def build_args(self) -> dict[str, str]:
        """The template's build arguments this variant sets (BASE_IMAGE and PIP_ARGS aside)."""
        return {
            "PIP_UNINSTALL": " ".join(self.uninstall),
            "APT_PACKAGES": " ".join(self.apt_packages),
            "VENDOR_ENTRYPOINT": self.vendor_entrypoint,
            "EXTRA_DIRS": " ".join(self.dirs),
            "HARNESS_IMAGE_CUDA": self.cuda or "",
        }


def cuda_torch(version: str) -> str:
    """A pin of a CUDA build of torch: ``version``, never its ``+cpu`` build.

    ``torch==V`` alone also matches ``V+cpu`` (PEP 440 ignores a local label the pin does not
    name) and pip prefers it when a local index or find-links folder holds it.
    """
    return f"torch=={version},!={version}+cpu"


@dataclass(frozen=True)
class ImageRecipe:
    """A backend's image: its repository name and one variant per device."""

    image: str
    variants: Mapping[str, ImageVariant]


@dataclass(frozen=True)
class ServerLaunch:
    """How the agent starts a backend's server: its command line, environment and files."""

    argv: tuple[str, ...]
    #: the model name requests give (the OpenAI API's ``model`` field)
    model_name: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: files written into the server's folder before it starts: name -> text
    files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingSupport:
    """How a backend serves an OpenAI-compatible endpoint (None on a spec: it cannot).

    ``launch(experiment, model_path, port, folder)`` builds the server's command line from the
    experiment's options (pure: it reads and starts nothing); ``folder`` is where the agent
    writes the launch's files and the server's log.
    """

    launch: Callable[[Experiment, str, int, Path], ServerLaunch]
    #: where readiness is probed (200 once the model is loaded)
    health_path: str = "/health"
    #: where the server says its version ({"version": ...})
    version_path: str = "/version"
    #: the engine's Prometheus metrics endpoint, when it has one
    metrics_path: str | None = None
    #: the Prometheus gauge of requests in the running batch, when the engine exports one
    running_gauge: str | None = None


@dataclass(frozen=True)
class BackendSpec:
    """One backend: options, engine class, capabilities and image recipe."""

    name: str
    options: type[BackendOptions]
    #: "module:Class" of the in-image engine (a harness.backends.engine.Engine subclass)
    engine: str
    #: device -> precisions the backend runs there
    precisions: Mapping[str, tuple[str, ...]]
    recipe: ImageRecipe | None = None
    #: quantized precision -> the options' ``quantization`` values that produce it
    quantization: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: quantized precision -> the scheme used when ``quantization`` is not given
    default_quantization: Mapping[str, str] = field(default_factory=dict)
    #: where the engine keeps built engines; the docker runtime mounts a host folder there
    cache_mount: str | None = None
    timestamp_source: TimestampSource = "stream"
    #: whether ``generate(..., 1)`` is a prefill-only pass (1 new token per request)
    prefill_only_pass: bool = True
    #: whether prefill computes logits at every prompt position (FLOPs count the LM head there)
    prompt_logits: bool = False
    serving: ServingSupport | None = None
    #: experiment ids of results schema 1 list this backend's block as null in experiments
    #: of other backends; the three built-in backends keep that so their ids never change,
    #: and a backend added later leaves its null block out of every id
    null_block_in_id: bool = False
    #: one line for CLI help and the docs
    summary: str = ""
    #: where the backend is listed (lower first); the first is the default of an experiment
    rank: int = 100
    #: extra checks of an experiment that the options model cannot make alone
    extra_problems: Callable[[Experiment], list[str]] | None = None
    #: quantization schemes the pinned engine refuses, and what to use instead
    refused_quantization: Mapping[str, str] = field(default_factory=dict)
    #: checks that need the model's files (config.json, a quantization config), made where
    #: the model folder is known: preflight for a local folder, the agent before loading
    model_problems: Callable[[Experiment, Path], list[str]] | None = None

    @property
    def devices(self) -> tuple[str, ...]:
        """Devices this backend runs on."""
        return tuple(self.precisions)

    def image_tag(self, device: str, namespace: str = "harness") -> str | None:
        """The default tag of this backend's image for ``device`` (None without a recipe)."""
        if self.recipe is None or device not in self.recipe.variants:
            return None
        return f"{namespace}/{self.recipe.image}:{device}"

    def default_options(self) -> BackendOptions:
        """The options block with every default."""
        return self.options()

    def quantization_scheme(self, precision: str, scheme: str | None) -> str | None:
        """The quantization scheme a run at ``precision`` uses (None for unquantized)."""
        if precision not in self.quantization:
            return None
        return scheme or self.default_quantization.get(precision)

    def quantization_problem(self, precision: str, scheme: str | None) -> str | None:
        """Why ``scheme`` cannot produce ``precision`` on this backend, or None if it can."""
        allowed = self.quantization.get(precision)
        key = f"{self.name}.quantization"
        if scheme is not None and scheme in self.refused_quantization:
            return f"{key} {scheme!r} {self.refused_quantization[scheme]}"
        if allowed is None:
            if scheme is None:
                return None
            fits = [p for p, schemes in self.quantization.items() if scheme in schemes]
            hint = f" (it gives precision {', '.join(fits)})" if fits else ""
            return (
                f"{key} {scheme!r} quantizes the weights, but precision {precision!r} is not "
                f"a quantized precision{hint}; remove {key} or change the precision"
            )
        if scheme is None:
            if precision in self.default_quantization:
                return None
            return (
                f"precision {precision!r} on backend {self.name!r} needs {key} "
                f"(one of: {', '.join(allowed)})"
            )
        if scheme not in allowed:
            return (
                f"{key} {scheme!r} cannot give precision {precision!r} "
                f"(for {precision!r} use one of: {', '.join(allowed)})"
            )
        return None

    def problems(self, experiment: Experiment, options: BackendOptions) -> list[str]:
        """Every reason this backend cannot run ``experiment`` with ``options``."""
        if experiment.device not in self.precisions:
            return [
                f"backend {self.name!r} does not run on device {experiment.device!r} "
                f"(it runs on: {', '.join(self.devices)})"
            ]
        if experiment.mode == "serving" and self.serving is None:
            return [self.no_server()]
        allowed = self.precisions[experiment.device]
        if experiment.precision not in allowed:
            return [
                f"backend {self.name!r} on {experiment.device} cannot run precision "
                f"{experiment.precision!r} (it supports: {', '.join(allowed)})"
            ]
        why = self.quantization_problem(experiment.precision, options.quantization_scheme_given())
        found = [why] if why else []
        found += options.problems(experiment)
        if self.extra_problems is not None:
            found += self.extra_problems(experiment)
        return found

    def no_server(self) -> str:
        """Why this backend cannot run ``mode: serving``, naming the backends that can."""
        from harness.backends import registry

        serving = [s.name for s in registry.specs() if s.serving is not None]
        return (f"backend {self.name!r} has no OpenAI-compatible server, so it cannot run "
                f"mode: serving (backends that serve: {', '.join(serving) or 'none'})")

    def problems_with_model(self, experiment: Experiment, model_dir: Path) -> list[str]:
        """Why ``experiment`` cannot run on the model in the folder ``model_dir``."""
        return self.model_problems(experiment, model_dir) if self.model_problems else []

    def describe(self) -> dict[str, Any]:
        """Capabilities as plain data: devices, precisions, quantization, serving, images."""
        return {
            "name": self.name,
            "summary": self.summary,
            "devices": {d: list(p) for d, p in self.precisions.items()},
            "quantization": {p: list(s) for p, s in self.quantization.items()},
            "timestamp_source": self.timestamp_source,
            "prefill_only_pass": self.prefill_only_pass,
            "prompt_logits": self.prompt_logits,
            "serving": self.serving is not None,
            "images": {d: self.image_tag(d) for d in self.devices},
        }
