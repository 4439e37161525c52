"""What happened to a run's GPU settings: the journal entry written before a change, and the record.

The controller writes a ``GpuJournalEntry`` into the manifest *before* it changes a GPU, so
that the next start can restore what a killed controller left (``harness.controller.recovery``).
The ``GpuSettingsRecord`` says what was asked, what each GPU held before, what it read back
after setting, and whether the previous values were restored; it is kept in the run's manifest
record and in its result.
"""

from __future__ import annotations

from pydantic import Field

from harness.config.gpu import GpuSettings
from harness.results.base import ResultModel as _Model


class GpuValues(_Model):
    """One GPU's settings as NVML reads them (None: not read, or not asked for)."""

    power_limit_w: float | None = None
    sm_clock_mhz: int | None = Field(None, description="the SM clock lock (min = max) set")
    memory_clock_mhz: int | None = Field(None, description="the memory clock lock set")


class GpuPrevious(_Model):
    """What restoring one GPU means: its previous power limit, and which clock locks to reset.

    NVML has no query for a clock lock, so a lock this harness set is restored by resetting it
    (the driver's default: unlocked).
    """

    index: int
    uuid: str | None = None
    power_limit_w: float | None = Field(None, description="the limit before the change (W)")
    reset_sm_clocks: bool = False
    reset_memory_clocks: bool = False


class GpuJournalEntry(_Model):
    """A change about to be made to GPUs, saved in the manifest before it is made."""

    run_id: str
    controller_pid: int
    written_at: str
    requested: GpuSettings
    gpus: list[GpuPrevious]


class GpuApplied(_Model):
    """One GPU: what it held before and what it read back after the settings were applied."""

    index: int
    uuid: str | None = None
    previous: GpuValues
    applied: GpuValues


class GpuSettingsRecord(_Model):
    """A run's GPU settings: requested, applied per GPU, and restored after the run."""

    requested: GpuSettings
    gpus: list[GpuApplied] = Field(default_factory=list)
    restored: bool | None = Field(None, description="None until the run ended")
    restore_error: str | None = None
    restored_by: str | None = Field(
        None, description="'controller' after the run, or 'recovery' at a later start")
