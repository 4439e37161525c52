"""Secrets reach the agent only through its environment and are scrubbed from what is kept.

A Hugging Face token is passed as HF_TOKEN; its value (and any other secret-looking variable's)
is replaced in the container log, error.json, results and manifest messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from harness.results.io import atomic_write_text

#: variables handed to the agent's environment when the controller has them
FORWARDED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "***REDACTED***"
#: names whose values are scrubbed wherever they appear (HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...)
SECRET_NAME_RE = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIALS?)($|_)")
#: shorter values are too likely to occur by chance to be scrubbed
MIN_SECRET_CHARS = 8
#: files of a run folder that are scrubbed after each run (text written by the agent)
SCRUBBED_FILES = ("container.log", "error.json", "result.json", "requests.jsonl",
                  "timeseries.csv", "config.json")


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret variables the agent gets (only those set and non-empty here)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in FORWARDED if env.get(name)}


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of this environment's secret-looking variables, longest first."""
    env = os.environ if environ is None else environ
    values = {
        value for name, value in env.items()
        if SECRET_NAME_RE.search(name.upper()) and len(value) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


class Scrubber:
    """Replaces known secret values in text and files."""

    def __init__(self, values: list[str]) -> None:
        self.values = [v for v in values if len(v) >= MIN_SECRET_CHARS]

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Scrubber:
        """A scrubber for the secrets in this environment."""
        return cls(secret_values(environ))

    def text(self, text: str | None) -> str | None:
        """The text with every secret value replaced."""
        if text is None:
            return None
        for value in self.values:
            text = text.replace(value, REDACTED)
        return text

    def file(self, path: Path) -> bool:
        """Scrub one file in place (atomically, only when it holds a secret); True if it did."""
        if not self.values:
            return False
        try:
            data = path.read_bytes()
        except OSError:
            return False
        needles = [v.encode() for v in self.values]
        if not any(n in data for n in needles):
            return False
        for needle in needles:
            data = data.replace(needle, REDACTED.encode())
        atomic_write_text(path, data.decode("utf-8", "replace"))
        return True

    def run_dir(self, run_dir: Path) -> list[str]:
        """Scrub the files of a run folder; the names of those that held a secret."""
        return [name for name in SCRUBBED_FILES if self.file(run_dir / name)]
