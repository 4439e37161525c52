"""GPU settings around a run (host side): journal, apply, read back, restore; recovery's restore.

For an experiment with ``gpu:`` set, before its container starts, for each of the run's GPUs:
read the current values, write a journal entry into the manifest (which GPUs, what they held,
what is about to be set) and save it, *then* set the power limit and lock the clocks, and read
them back. After the run (done, failed, timed out or interrupted) the previous values are
restored and the entry cleared. An entry that a killed controller left is restored at the next
start (``restore_journal``, called by recovery) and reported. The GPUs are reached through the
study's NVML library (``harness.devices``: the system's NVML or its simulated GPUs), chosen by
configuration. Any refusal fails the run with ``gpu_settings_failed``: a run never goes ahead
silently at other settings than it asked for.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from harness.config.gpu import GpuSettings
from harness.devices.host import GpusUnavailable, HostGpus
from harness.errors import RunFailure
from harness.results.events import Note, Observer
from harness.results.gpusettings import (
    GpuApplied,
    GpuJournalEntry,
    GpuPrevious,
    GpuSettingsRecord,
    GpuValues,
)
from harness.results.io import atomic_write_json
from harness.results.manifest import now_iso
from harness.results.reasons import FailureReason
from harness.results.schema import GpuLibrary, Manifest

#: the enforced power limit read back may differ from the one set by this much (W)
READBACK_TOLERANCE_W = 1.0


class Journal(Protocol):
    """Where changes about to be made to GPUs are written first."""

    def add(self, entry: GpuJournalEntry) -> None:
        """Record a change about to be made (durable before the caller makes it)."""

    def remove(self, run_id: str) -> None:
        """Forget a change once it has been undone."""

    def entries(self) -> list[GpuJournalEntry]:
        """The changes not yet undone."""


class ManifestJournal:
    """Journal entries kept in the study's manifest, saved at once on every change.

    Runs in parallel add and remove entries from several threads: each change and its save
    hold ``lock`` (the study's manifest lock, re-entrant), so no thread's entry is lost.
    """

    def __init__(self, manifest: Manifest, save: Callable[[], None],
                 lock: AbstractContextManager[object] | None = None) -> None:
        self.manifest = manifest
        self.save = save
        self.lock = lock if lock is not None else threading.RLock()

    def add(self, entry: GpuJournalEntry) -> None:
        """Record a change about to be made (saved before the caller makes it)."""
        with self.lock:
            self.manifest.gpu_journal = [e for e in self.manifest.gpu_journal
                                         if e.run_id != entry.run_id] + [entry]
            self.save()

    def remove(self, run_id: str) -> None:
        """Forget a change once it has been undone."""
        with self.lock:
            self.manifest.gpu_journal = [e for e in self.manifest.gpu_journal
                                         if e.run_id != run_id]
            self.save()

    def entries(self) -> list[GpuJournalEntry]:
        """The changes not yet undone."""
        with self.lock:
            return list(self.manifest.gpu_journal)


class MemoryJournal:
    """Journal entries held in memory: for a single run outside a study (harness run)."""

    def __init__(self) -> None:
        self._entries: list[GpuJournalEntry] = []

    def add(self, entry: GpuJournalEntry) -> None:
        """Record a change about to be made."""
        self._entries = [e for e in self._entries if e.run_id != entry.run_id] + [entry]

    def remove(self, run_id: str) -> None:
        """Forget a change once it has been undone."""
        self._entries = [e for e in self._entries if e.run_id != run_id]

    def entries(self) -> list[GpuJournalEntry]:
        """The changes not yet undone."""
        return list(self._entries)


class FileJournal:
    """Journal entries kept in a JSON file, rewritten atomically on every change.

    For a run on a Slurm node: the node cannot write the manifest (the controller owns it),
    so it journals into the run's folder on the shared filesystem, where the controller finds
    what a job that was killed left (``left_by_node``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, entry: GpuJournalEntry) -> None:
        """Record a change about to be made (on disk before the caller makes it)."""
        self._write([e for e in self.entries() if e.run_id != entry.run_id] + [entry])

    def remove(self, run_id: str) -> None:
        """Forget a change once it has been undone (the file goes with the last entry)."""
        self._write([e for e in self.entries() if e.run_id != run_id])

    def entries(self) -> list[GpuJournalEntry]:
        """The changes not yet undone (none when the file is absent or unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [GpuJournalEntry.model_validate(e) for e in data]
        except (OSError, ValueError):
            return []

    def _write(self, entries: list[GpuJournalEntry]) -> None:
        if entries:
            atomic_write_json(self.path, [e.model_dump(mode="json") for e in entries])
        else:
            self.path.unlink(missing_ok=True)


def left_by_node(journal: Journal, node: str | None) -> str | None:
    """What a node's journal says was left on its GPUs, for the run's record (None: nothing).

    Those GPUs need a reset on that node, which only that node can do.
    """
    entries = journal.entries()
    if not entries:
        return None
    where = f"node {node}" if node else "its node"
    gpus = "; ".join(
        f"GPU {g.index}" + (f" ({g.uuid})" if g.uuid else "")
        + (f": power limit back to {g.power_limit_w:g} W" if g.power_limit_w is not None else "")
        + (", SM clock unlocked" if g.reset_sm_clocks else "")
        + (", memory clock unlocked" if g.reset_memory_clocks else "")
        for e in entries for g in e.gpus)
    return (f"the job ended before it restored its GPU settings "
            f"({'; '.join(e.requested.described() for e in entries)}) on {where}: restore them "
            f"there ({gpus}; e.g. nvidia-smi -i UUID -pl W, -rgc, -rmc), or reset GPUs in the "
            "cluster's Slurm epilog (docs/gpu-control.md)")


def _fail(message: str) -> RunFailure:
    return RunFailure(message, reason=FailureReason.GPU_SETTINGS_FAILED)


class GpuControl:
    """Applies and restores one study's GPU settings through its NVML library."""

    def __init__(self, library: GpuLibrary, journal: Journal | None = None) -> None:
        self.library = library
        self.journal: Journal = journal if journal is not None else MemoryJournal()

    def apply(self, run_id: str, settings: GpuSettings, gpus: Sequence[int]) -> GpuSettingsRecord:
        """Journal, set and read back ``settings`` on ``gpus``; RunFailure when any step fails.

        On failure whatever was already changed is restored before the error is raised.
        """
        if not gpus:
            raise _fail(f"gpu: {settings.described()} was asked for, but the run has no GPUs")
        try:
            host = HostGpus.open(self.library)
        except GpusUnavailable as e:
            raise _fail(f"gpu: {settings.described()}: {e}") from e
        with host:
            try:
                uuids = host.uuids(gpus)
                previous = [self._read(host, i, settings) for i in gpus]
            except GpusUnavailable as e:
                raise _fail(f"gpu: could not read the GPUs' settings before changing them: {e}") \
                    from e
            entry = GpuJournalEntry(
                run_id=run_id, controller_pid=os.getpid(), written_at=now_iso(),
                requested=settings,
                gpus=[GpuPrevious(index=i, uuid=u, power_limit_w=p.power_limit_w,
                                  reset_sm_clocks=settings.sm_clock_mhz is not None,
                                  reset_memory_clocks=settings.memory_clock_mhz is not None)
                      for i, u, p in zip(gpus, uuids, previous, strict=True)])
            self.journal.add(entry)  # saved before anything changes
            try:
                applied = [self._set(host, i, settings) for i in gpus]
            except GpusUnavailable as e:
                errors = _undo(host, entry)
                if not errors:
                    self.journal.remove(run_id)
                undone = ("the GPUs were restored" if not errors
                          else f"restoring them failed too: {'; '.join(errors)}")
                raise _fail(f"gpu: {settings.described()} could not be applied: {e}; {undone}") \
                    from e
        return GpuSettingsRecord(
            requested=settings,
            gpus=[GpuApplied(index=i, uuid=u, previous=p, applied=a)
                  for i, u, p, a in zip(gpus, uuids, previous, applied, strict=True)])

    @staticmethod
    def _read(host: HostGpus, index: int, settings: GpuSettings) -> GpuValues:
        """What GPU ``index`` holds now, for the settings about to change."""
        return GpuValues(
            power_limit_w=host.power_limit_w(index) if settings.power_limit_w is not None
            else None)

    @staticmethod
    def _set(host: HostGpus, index: int, settings: GpuSettings) -> GpuValues:
        """Set what is asked on one GPU and read back what holds."""
        applied = GpuValues()
        if settings.power_limit_w is not None:
            host.set_power_limit_w(index, settings.power_limit_w)
            enforced = host.enforced_power_limit_w(index)
            if abs(enforced - settings.power_limit_w) > READBACK_TOLERANCE_W:
                raise GpusUnavailable(
                    f"GPU {index} enforces {enforced:g} W after its power limit was set to "
                    f"{settings.power_limit_w} W (another limit, such as a board or system "
                    "cap, is lower)")
            applied.power_limit_w = enforced
        # NVML has no query for a clock lock: a lock it accepted is what is recorded, and the
        # agent checks the clocks it samples in the measured window against it
        if settings.sm_clock_mhz is not None:
            host.lock_clocks_mhz(index, "sm", settings.sm_clock_mhz)
            applied.sm_clock_mhz = settings.sm_clock_mhz
        if settings.memory_clock_mhz is not None:
            host.lock_clocks_mhz(index, "memory", settings.memory_clock_mhz)
            applied.memory_clock_mhz = settings.memory_clock_mhz
        return applied

    def restore(self, run_id: str, record: GpuSettingsRecord, *, by: str = "controller") -> None:
        """Put back what the run's GPUs held before; the record says whether that worked.

        The journal entry is cleared once everything was restored; otherwise it stays, and the
        next start tries again.
        """
        entry = next((e for e in self.journal.entries() if e.run_id == run_id), None)
        if entry is None:
            entry = GpuJournalEntry(
                run_id=run_id, controller_pid=os.getpid(), written_at=now_iso(),
                requested=record.requested,
                gpus=[GpuPrevious(index=g.index, uuid=g.uuid, power_limit_w=g.previous.power_limit_w,
                                  reset_sm_clocks=record.requested.sm_clock_mhz is not None,
                                  reset_memory_clocks=record.requested.memory_clock_mhz is not None)
                      for g in record.gpus])
        errors = restore_entry(self.library, entry)
        record.restored = not errors
        record.restore_error = "; ".join(errors) or None
        record.restored_by = by
        if not errors:
            self.journal.remove(run_id)


def _undo(host: HostGpus, entry: GpuJournalEntry) -> list[str]:
    """Restore one journal entry's GPUs through an open library; the errors, if any."""
    errors = []
    for gpu in entry.gpus:
        steps: list[tuple[str, Callable[..., None], tuple[object, ...]]] = []
        if gpu.power_limit_w is not None:
            steps.append(("power limit", host.set_power_limit_w, (gpu.index, gpu.power_limit_w)))
        if gpu.reset_sm_clocks:
            steps.append(("SM clock lock", host.reset_clocks, (gpu.index, "sm")))
        if gpu.reset_memory_clocks:
            steps.append(("memory clock lock", host.reset_clocks, (gpu.index, "memory")))
        for what, step, args in steps:
            try:
                step(*args)
            except GpusUnavailable as e:
                errors.append(f"GPU {gpu.index} {what}: {e}")
    return errors


def restore_entry(library: GpuLibrary, entry: GpuJournalEntry) -> list[str]:
    """Restore what one journal entry names; the errors (empty when all was restored)."""
    try:
        with HostGpus.open(library) as host:
            return _undo(host, entry)
    except GpusUnavailable as e:
        return [f"the GPUs could not be reached: {e}"]


def restore_journal(manifest: Manifest, library: GpuLibrary, observer: Observer) -> list[str]:
    """Restore the GPU settings a lost controller left (the manifest's journal); say what was done.

    Each restored entry is cleared and noted on its run's record; an entry that cannot be
    restored stays for the next start. The caller saves the manifest.
    """
    said = []
    for entry in list(manifest.gpu_journal):
        errors = restore_entry(library, entry)
        gpus = ", ".join(str(g.index) for g in entry.gpus)
        if errors:
            text = (f"run {entry.run_id}: GPU settings ({entry.requested.described()}) left on "
                    f"GPUs {gpus} by a lost controller could not be restored: "
                    f"{'; '.join(errors)}; they are tried again at the next start")
        else:
            manifest.gpu_journal.remove(entry)
            before = ", ".join(
                f"GPU {g.index}: " + ", ".join(
                    ([f"power limit {g.power_limit_w:g} W"] if g.power_limit_w is not None else [])
                    + (["SM clock unlocked"] if g.reset_sm_clocks else [])
                    + (["memory clock unlocked"] if g.reset_memory_clocks else []))
                for g in entry.gpus)
            text = (f"run {entry.run_id}: restored the GPU settings a lost controller left "
                    f"({entry.requested.described()}) to what they were before: {before}")
        _note_on_record(manifest, entry, errors)
        observer(Note(text))
        said.append(text)
    return said


def _note_on_record(manifest: Manifest, entry: GpuJournalEntry, errors: list[str]) -> None:
    try:
        rec = manifest.record(entry.run_id)
    except KeyError:
        return
    record = rec.gpu_settings or GpuSettingsRecord(requested=entry.requested)
    record.restored = not errors
    record.restore_error = "; ".join(errors) or None
    record.restored_by = "recovery"
    rec.gpu_settings = record
