"""Preflight of ``gpu:`` settings: refused before any container starts when they cannot hold.

For the GPUs a study may use (``execution.gpus``), through the study's NVML library: every
requested power limit must lie within NVML's constraints for each GPU, every locked clock
within the GPU's supported clocks, and changing settings must be permitted (probed by setting
each GPU's power limit to the value it already has, which NVML refuses without root). Each
problem names the experiment, the field and the allowed range. A value outside a range is
the study file's mistake; GPUs that cannot be reached or changed are this host's (``host``):
``harness study plan`` says those as warnings, a start refuses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.config.experiment import Experiment
from harness.config.study import Execution
from harness.devices.host import NVML_ERROR_NO_PERMISSION, GpusUnavailable, HostGpus, SettingRefused
from harness.devices.library import study_library
from harness.results.schema import GpuLibrary


@dataclass
class GpuFindings:
    """Why gpu: settings cannot be applied: values outside ranges, and what this host lacks."""

    values: list[str] = field(default_factory=list)
    host: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        """Every problem, values first."""
        return self.values + self.host


def gpu_problems(experiments: Iterable[Experiment], execution: Execution, origin: str,
                 library: GpuLibrary | None = None, *, probe_clocks: bool = False) -> list[str]:
    """Why the experiments' gpu: settings cannot be applied to the study's GPUs (empty: they can)."""
    return gpu_findings(experiments, execution, origin, library, probe_clocks=probe_clocks).all


def gpu_findings(experiments: Iterable[Experiment], execution: Execution, origin: str,
                 library: GpuLibrary | None = None, *, probe_clocks: bool = False) -> GpuFindings:
    """gpu_problems(), split into the study's values and this host's GPUs.

    The permission to set power limits is probed with a no-op (each GPU's own limit). Clock
    locks have no such no-op, and no lock in effect is read: with ``probe_clocks`` (at a
    start, never at a plan) each GPU's requested clock domains are locked at the first
    requested value and unlocked again, which is what every run's restore leaves them in; a
    GPU or a driver that refuses locks is then an error before any container starts.
    """
    found = GpuFindings()
    wanted = [e for e in experiments if e.gpu.any_set]
    if not wanted:
        return found
    library = library or study_library(execution, None)
    gpus = list(execution.gpus)
    try:
        host = HostGpus.open(library)
    except GpusUnavailable as e:
        found.host.append(f"{origin}: gpu: settings are asked for, but the GPUs cannot be "
                          f"reached to apply them: {e}")
        return found
    with host:
        try:
            ranges = {i: (host.power_limit_range_w(i), host.sm_clocks_mhz(i),
                          host.memory_clocks_mhz(i)) for i in gpus}
        except GpusUnavailable as e:
            found.host.append(f"{origin}: gpu: settings are asked for, but the GPUs' allowed "
                              f"ranges cannot be read: {e}")
            return found
        for exp in wanted:
            found.values += _range_problems(exp, ranges, origin)
        found.host += _permission_problems(host, gpus, origin)
        if probe_clocks and not found.values and not found.host:
            found.host += _clock_lock_problems(host, gpus, wanted, origin)
    found.values = list(dict.fromkeys(found.values))
    return found


def _range_problems(exp: Experiment, ranges: dict[int, tuple[tuple[float, float], list[int],
                                                             list[int]]], origin: str) -> list[str]:
    found = []
    g = exp.gpu
    for index, ((low_w, high_w), sm, mem) in ranges.items():
        where = f"{origin}: experiment {exp.id}: GPU {index}"
        if g.power_limit_w is not None and not low_w <= g.power_limit_w <= high_w:
            found.append(f"{where}: gpu.power_limit_w {g.power_limit_w} W is outside the "
                         f"allowed range {low_w:g}-{high_w:g} W (NVML power limit constraints)")
        for name, value, allowed in (("sm_clock_mhz", g.sm_clock_mhz, sm),
                                     ("memory_clock_mhz", g.memory_clock_mhz, mem)):
            if value is None:
                continue
            if not allowed:
                found.append(f"{where}: gpu.{name}: the GPU lists no supported clocks")
            elif not min(allowed) <= value <= max(allowed):
                found.append(f"{where}: gpu.{name} {value} MHz is outside the supported "
                             f"range {min(allowed)}-{max(allowed)} MHz (supported: "
                             f"{', '.join(str(c) for c in allowed[:12])}"
                             f"{', ...' if len(allowed) > 12 else ''})")
    return found


def _permission_problems(host: HostGpus, gpus: list[int], origin: str) -> list[str]:
    """Probe: set each GPU's power limit to what it is already (a no-op where permitted)."""
    for index in gpus:
        try:
            host.set_power_limit_w(index, host.power_limit_w(index))
        except SettingRefused as e:
            hint = (" run the study as root (or give the harness the right to change GPU "
                    "settings), or drop the gpu: settings" if e.code == NVML_ERROR_NO_PERMISSION
                    else " drop the gpu: settings for this GPU")
            return [f"{origin}: gpu: settings cannot be changed on GPU {index}: {e};{hint}"]
        except GpusUnavailable as e:
            return [f"{origin}: gpu: settings cannot be checked on GPU {index}: {e}"]
    return []


def _clock_lock_problems(host: HostGpus, gpus: list[int], wanted: list[Experiment],
                         origin: str) -> list[str]:
    """Probe: lock each clock domain a run will lock, at its first requested value, and unlock."""
    domains: dict[str, int] = {}
    for exp in wanted:
        for domain, value in (("sm", exp.gpu.sm_clock_mhz), ("memory", exp.gpu.memory_clock_mhz)):
            if value is not None:
                domains.setdefault(domain, value)
    for domain, mhz in domains.items():
        for index in gpus:
            try:
                host.lock_clocks_mhz(index, domain, mhz)
                host.reset_clocks(index, domain)
            except SettingRefused as e:
                hint = (" run the study as root, or drop gpu." if e.code == NVML_ERROR_NO_PERMISSION
                        else " this GPU or its driver does not lock clocks; drop gpu.")
                return [f"{origin}: gpu: the {domain} clock cannot be locked on GPU {index}: "
                        f"{e};{hint}{domain}_clock_mhz"]
            except GpusUnavailable as e:
                return [f"{origin}: gpu: clock locks cannot be checked on GPU {index}: {e}"]
    return []
