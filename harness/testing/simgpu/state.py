"""Settings of simulated GPUs that outlive a process: power limits and locked clocks.

A real GPU keeps its power limit and locked clocks in the driver, so a controller that sets
them (or dies after setting them) and the agent in a container see the same values. The
simulated GPUs keep them in a state folder instead: ``settings.json``, rewritten atomically
(write, fsync, rename) under a lock file by the process that changes a setting, and re-read by
every other instance when its identity (inode and mtime) changes, at most every
``REREAD_S`` seconds. A container gets the folder read-only: it sees settings, it cannot
change them (neither can an unprivileged process on a real GPU).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.testing.simgpu.device import Settings

SETTINGS_FILE = "settings.json"
LOCK_FILE = ".settings.lock"
FORMAT = "harness.simgpu.settings/1"
#: an instance looks for changes made by other processes at most this often
REREAD_S = 0.5


def _pair(value: Any) -> tuple[int, int] | None:
    return (int(value[0]), int(value[1])) if value is not None else None


def _decode(data: Any) -> dict[int, Settings]:
    devices = data.get("devices", {}) if isinstance(data, dict) else {}
    return {
        int(key): Settings(
            power_limit_w=entry.get("power_limit_w"),
            gpu_locked_mhz=_pair(entry.get("gpu_locked_mhz")),
            mem_locked_mhz=_pair(entry.get("mem_locked_mhz")),
        )
        for key, entry in devices.items()
    }


def _encode(settings: dict[int, Settings]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "devices": {
            str(index): {
                "power_limit_w": s.power_limit_w,
                "gpu_locked_mhz": list(s.gpu_locked_mhz) if s.gpu_locked_mhz else None,
                "mem_locked_mhz": list(s.mem_locked_mhz) if s.mem_locked_mhz else None,
            }
            for index, s in sorted(settings.items())
        },
    }


def write_json_atomically(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o644)
            json.dump(data, fh, indent=1)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class SettingsStore:
    """The settings of every device, in a state folder (or in memory without one)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._seen: tuple[int, int] | None = None
        self._checked = -float("inf")
        self._memory: dict[int, Settings] = {}

    @property
    def file(self) -> Path | None:
        """The settings file, when there is a state folder."""
        return self.folder / SETTINGS_FILE if self.folder is not None else None

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.file) if self.file is not None else None
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns) if st is not None else None

    def read(self) -> dict[int, Settings]:
        """Every device's settings as stored now."""
        if self.file is None:
            return dict(self._memory)
        self._seen = self._identity()
        try:
            return _decode(json.loads(self.file.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: defaults, as a driver without settings

    def changed(self, now_s: float) -> dict[int, Settings] | None:
        """The stored settings when another process changed them since the last look, else None.

        Looks at the file at most every ``REREAD_S`` seconds of ``now_s``.
        """
        if self.file is None or now_s - self._checked < REREAD_S:
            return None
        self._checked = now_s
        if self._identity() == self._seen:
            return None
        return self.read()

    def update(self, index: int, **changes: Any) -> dict[int, Settings]:
        """Change one device's settings (under the lock) and return every device's."""
        if self.file is None or self.folder is None:
            current = self._memory.get(index, Settings())
            self._memory[index] = Settings(**{**vars(current), **changes})
            return dict(self._memory)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            settings = self.read()
            current = settings.get(index, Settings())
            settings[index] = Settings(**{**vars(current), **changes})
            write_json_atomically(self.file, _encode(settings))
            self._seen = self._identity()
        return settings
