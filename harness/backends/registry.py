"""The registry of backends: built-in packages and plug-ins found through entry points.

Built-in backends are the sub-packages of ``harness.backends`` that export a ``SPEC``; plug-ins
are entries of the ``harness.backends`` entry-point group, lazy ``module:attribute`` strings.
Resolving one imports the backend's spec module (options and capabilities, pydantic only),
never its engine; the agent imports the engine class named by the spec when a run starts. The
registry is read once, on first use, and is then fixed for the process: the experiment model's
backend fields are built from it. Backends are listed by their spec's ``rank``, then name; the
first is the default backend of an experiment that names none.

A backend outside this repository registers itself in its distribution's metadata::

    [project.entry-points."harness.backends"]
    mybackend = "my_package.harness_backend:SPEC"

where ``SPEC`` is a ``harness.backends.spec.BackendSpec`` whose ``name`` is the entry's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata

from harness.backends.spec import BackendOptions, BackendSpec
from harness.config.problems import suggest
from harness.errors import EnvironmentProblem, UserInputError

ENTRY_POINT_GROUP = "harness.backends"
#: the package whose sub-packages are the built-in backends
BUILTIN_PACKAGE = "harness.backends"


class PluginError(Exception):
    """A registered backend entry cannot be used; the message says why."""


def resolve(ref: str) -> object:
    """Import ``module:attribute`` and return the attribute."""
    module_name, _, attribute = ref.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"{ref!r} is not of the form 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"cannot import {module_name!r}: {e}") from e
    try:
        return getattr(module, attribute)
    except AttributeError as e:
        raise PluginError(f"{module_name!r} has no attribute {attribute!r}") from e


def checked_spec(name: str, value: object, where: str) -> BackendSpec:
    """``value`` if it is a well-formed BackendSpec registered under ``name``."""
    if not isinstance(value, BackendSpec):
        raise PluginError(f"{where} is a {type(value).__name__}, not a BackendSpec")
    if value.name != name:
        raise PluginError(f"{where} is registered as {name!r} but its spec says {value.name!r}")
    if not name.isidentifier() or name != name.lower():
        raise PluginError(f"{where}: backend names are lower-case identifiers, not {name!r}")
    if not (isinstance(value.options, type) and issubclass(value.options, BackendOptions)):
        raise PluginError(f"{where}: options must subclass harness.backends.spec.BackendOptions")
    if ":" not in value.engine:
        raise PluginError(f"{where}: engine must be a 'module:Class' string, not {value.engine!r}")
    return value


@dataclass
class Registry:
    """The backends of this process: name -> spec, and the entries that failed to load."""

    specs: dict[str, BackendSpec] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, ref: str, where: str) -> None:
        """Resolve and check one entry; remember why when it cannot be used."""
        if name in self.specs or name in self.broken:
            self.broken[f"{name} ({where})"] = f"the name {name!r} is already registered"
            return
        try:
            self.specs[name] = checked_spec(name, resolve(ref), where)
        except PluginError as e:
            self.broken[name] = f"{where}: {e}"


def builtin_entries() -> dict[str, str]:
    """Name -> ``module:SPEC`` of every sub-package of harness.backends (no import yet)."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return {
        info.name: f"{BUILTIN_PACKAGE}.{info.name}:SPEC"
        for info in pkgutil.iter_modules(package.__path__)
        if info.ispkg
    }


@cache
def _registry() -> Registry:
    registry = Registry()
    for name, ref in sorted(builtin_entries().items()):
        registry.add(name, ref, f"built-in backend {ref}")
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        registry.add(entry.name, entry.value, f"entry point {entry.name} = {entry.value}")
    registry.specs = dict(sorted(registry.specs.items(), key=lambda kv: (kv[1].rank, kv[0])))
    return registry


def specs() -> tuple[BackendSpec, ...]:
    """Every usable backend, built-in ones first."""
    return tuple(_registry().specs.values())


def names() -> tuple[str, ...]:
    """Names of every usable backend, built-in ones first."""
    return tuple(_registry().specs)


def default_name() -> str:
    """The backend an experiment uses when it names none (the first built-in one)."""
    return next(iter(_registry().specs))


def broken() -> dict[str, str]:
    """Registered entries that cannot be used, and why (``harness doctor`` lists them)."""
    return dict(_registry().broken)


def unknown_backend(name: str) -> str:
    """Why ``name`` is not a backend, with a did-you-mean and the broken plug-in if it is one."""
    registry = _registry()
    if name in registry.broken:
        return f"backend {name!r} is registered but cannot be used: {registry.broken[name]}"
    return (f"unknown backend {name!r}{suggest(name, registry.specs)} "
            f"(expected one of: {', '.join(registry.specs)})")


def find(name: str) -> BackendSpec | None:
    """The spec of backend ``name``, or None."""
    return _registry().specs.get(name)


def get(name: str) -> BackendSpec:
    """The spec of backend ``name``; UserInputError with a did-you-mean when there is none."""
    spec = _registry().specs.get(name)
    if spec is None:
        raise UserInputError(unknown_backend(name))
    return spec


def engine_class(spec: BackendSpec) -> type:
    """Import the engine class a spec names (in the image); EnvironmentProblem if it cannot."""
    from harness.backends.engine import Engine

    try:
        cls = resolve(spec.engine)
    except PluginError as e:
        extra = ""
        if spec.recipe is not None:
            extra = (f"; run it in its image (harness/{spec.recipe.image}:DEVICE) or install its "
                     f"extra")
        raise EnvironmentProblem(
            f"backend {spec.name!r} cannot be imported in this environment ({e}){extra}"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EnvironmentProblem(f"backend {spec.name!r}: {spec.engine} is not an Engine subclass")
    return cls
