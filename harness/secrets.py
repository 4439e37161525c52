"""The one secrets policy: which names hold secrets, which values look like one, and redaction.

Used at run time (the controller forwards the Hugging Face token to the agent and scrubs the
values of this environment's secret variables from run folders) and when a bundle is made
(every text file is redacted, each redaction listed by file and field, never by value).

**Names.** A name is split into words at ``_``, ``-``, ``.``, spaces and lower-to-upper case
changes (``apiKey`` is ``api key``). Two rules, by the name's case:

- *Environment-style names* (all upper case: ``HF_TOKEN``, ``AWS_SECRET_ACCESS_KEY``) are secret
  when their last word is TOKEN, KEY, SECRET, PASSWORD, PASSWD, PASSPHRASE, CREDENTIAL(S) or
  APIKEY (``WANDB_KEY``, ``SSH_KEY``, ``MY_PRIVATE_KEY``, ``GOOGLE_APPLICATION_CREDENTIALS``), or
  when SECRET, PASSWORD, PASSWD, PASSPHRASE, CREDENTIAL(S) or APIKEY is any word, or API KEY,
  ACCESS KEY, PRIVATE KEY or SECRET KEY any two words in a row (``AWS_ACCESS_KEY_ID``). TOKEN and
  KEY elsewhere do not count: ``HF_TOKEN_PATH`` names a file, ``TOKENIZERS_PARALLELISM`` a switch.
- *Any other name* (JSON and YAML keys, command-line flags, query parameters: lower, camel or
  kebab case) is secret when its last word is secret, password, passwd, passphrase,
  credential(s), apikey or authorization; when it is the single word ``token``; or when its last
  two words are a token or key qualified as a credential (``access_token``, ``hf-token``,
  ``apiKey``, ``private_key``, ``wandb_key``: see QUALIFIED). Result fields are data, never
  secrets, though they say "token" or "key": ``j_per_output_token``, ``token_timing``,
  ``output_tokens``, ``max_tokens``, ``engine_key`` (an engine cache key),
  ``eos_token``.

**Values.** Whatever its name, a value that looks like a credential is a secret: Hugging Face
(``hf_...``), GitHub, OpenAI-style (``sk-...``) and Slack tokens, AWS access key ids, ``Bearer ...``
headers, the password of a ``scheme://user:password@host`` URL and PEM private key blocks.
So are the values of this environment's secret-named variables wherever they appear, unless
shorter than MIN_SECRET_CHARS (too likely to occur by chance).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.results.io import atomic_write_text

REDACTED = "***REDACTED***"
#: variables handed to the agent's environment when the controller has them
FORWARDED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
#: shorter values are too likely to occur by chance to be scrubbed
MIN_SECRET_CHARS = 8
#: files of a run folder that are scrubbed after each run (text written by the agent)
SCRUBBED_FILES = ("container.log", "error.json", "result.json", "requests.jsonl",
                  "timeseries.csv", "config.json")

# -- names -----------------------------------------------------------------------------------

#: words that make an upper-case name secret when they end it
ENV_LAST = frozenset({"token", "key", "secret", "password", "passwd", "passphrase", "credential",
                      "credentials", "apikey"})
#: words that make any name secret wherever they stand (upper case) or when they end it
STRONG = frozenset({"secret", "password", "passwd", "passphrase", "credential", "credentials",
                    "apikey"})
#: two words in a row that make an upper-case name secret wherever they stand
ENV_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key")})
#: services whose tokens and keys are credentials
SERVICES = frozenset({"hf", "hub", "huggingface", "github", "gh", "gitlab", "wandb", "openai",
                      "anthropic", "aws", "azure", "slack", "npm", "pypi", "docker", "registry"})
#: the words before a final ``token`` or ``key`` that make a lower-case name a credential
QUALIFIED = {
    "token": SERVICES | {"access", "auth", "refresh", "api", "bearer", "session", "id", "oauth",
                         "personal", "private", "secret", "csrf"},
    "key": SERVICES | {"api", "access", "secret", "private", "ssh", "signing", "encryption",
                       "master"},
}
_WORD_RE = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def name_words(name: str) -> list[str]:
    """The lower-case words of a name (``apiKey`` -> api, key; ``HF_TOKEN`` -> hf, token)."""
    return [w.lower() for w in _WORD_RE.split(name) if w]


def is_secret_name(name: str) -> bool:
    """Whether a variable or key name holds a credential (HF_TOKEN, apiKey; not output_tokens)."""
    words = name_words(name)
    if not words:
        return False
    if name.isupper():
        return (words[-1] in ENV_LAST or any(w in STRONG for w in words)
                or any(pair in ENV_PAIRS for pair in zip(words, words[1:], strict=False)))
    last = words[-1]
    if last in STRONG or last == "authorization" or words == ["token"]:
        return True
    return len(words) >= 2 and words[-2] in QUALIFIED.get(last, frozenset())


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValuePattern:
    """A kind of value that is a credential whatever its name; group ``keep`` stays."""

    label: str
    regex: re.Pattern[str]


VALUE_PATTERNS: tuple[ValuePattern, ...] = (
    ValuePattern("hf_ token", re.compile(r"\b(?P<keep>hf_)[A-Za-z0-9]{20,}\b")),
    ValuePattern("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|"
                                            r"github_pat_[A-Za-z0-9_]{40,})\b")),
    ValuePattern("sk- key", re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{20,}")),
    ValuePattern("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ValuePattern("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ValuePattern("bearer token", re.compile(r"(?i)\b(?P<keep>bearer\s+)[A-Za-z0-9._~+/=-]{8,}")),
    ValuePattern("URL password", re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)"
                                            r"[^/\s@]+(?=@)")),
    # last: it spans lines, so the line numbers of the other findings are counted before it
    ValuePattern("private key block", re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----", re.S)),
)

# "NAME": "value" (JSON); the name is judged by is_secret_name()
JSON_PAIR_RE = re.compile(r'"(?P<name>[^"\\\n]{1,200})"(?P<sep>\s*:\s*)"(?P<value>(?:[^"\\\n]|\\.)*)"')
# NAME=value or NAME: value, NAME in environment style (upper case)
ENV_PAIR_RE = re.compile(
    r"(?<![A-Za-z0-9_])(?P<name>[A-Z][A-Z0-9_]*)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;}\]]+)"
)
# name=value in any case (command lines, URLs' query strings, .env files)
ASSIGN_RE = re.compile(
    r"(?<![A-Za-z0-9_.-])(?P<name>[A-Za-z_-][A-Za-z0-9_.-]*)(?P<sep>=)"
    r"(?P<value>\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;&}\]]+)"
)
_PAIR_RES = (JSON_PAIR_RE, ENV_PAIR_RE, ASSIGN_RE)


class Finding(NamedTuple):
    """One redacted value: its line in the text (from 1) and what it was (a name or a kind)."""

    line: int
    what: str


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _redact_pairs(text: str, regex: re.Pattern[str], found: list[Finding]) -> str:
    def pair(match: re.Match[str]) -> str:
        name, value = match.group("name"), match.group("value")
        bare = value.strip("\"'")
        if not is_secret_name(name) or not bare or REDACTED in value:
            return match.group(0)
        found.append(Finding(_line(text, match.start()), name.lstrip("-")))
        quote = value[0] if value[:1] in ("'", '"') and len(value) > 1 else ""
        whole, start = match.group(0), match.start()
        before, after = whole[:match.start("value") - start], whole[match.end("value") - start:]
        return f"{before}{quote}{REDACTED}{quote}{after}"

    return regex.sub(pair, text)


def _redact_pattern(text: str, pattern: ValuePattern, found: list[Finding]) -> str:
    def value(match: re.Match[str]) -> str:
        keep = match.groupdict().get("keep") or ""
        if match.group(0) == keep + REDACTED:
            return match.group(0)
        found.append(Finding(_line(text, match.start()), pattern.label))
        return keep + REDACTED

    return pattern.regex.sub(value, text)


def redact_text(text: str, known: Iterable[str] = ()) -> tuple[str, list[Finding]]:
    """The text with every secret replaced by REDACTED, and where each was (never the value).

    ``known`` are values that are secret wherever they appear (this environment's secrets).
    """
    found: list[Finding] = []
    for value in sorted({v for v in known if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        start = text.find(value)
        while start >= 0:
            found.append(Finding(_line(text, start), "a secret variable's value"))
            start = text.find(value, start + len(value))
        text = text.replace(value, REDACTED)
    for regex in _PAIR_RES:
        text = _redact_pairs(text, regex, found)
    for pattern in VALUE_PATTERNS:
        text = _redact_pattern(text, pattern, found)
    return text, sorted(found)


def redact_json(data: Any, known: Iterable[str] = (), path: str = "") -> tuple[Any, list[str]]:
    """Parsed JSON with secrets redacted, and the dotted field of each (never the value).

    A string under a secret name is replaced whole; any other string is redacted as text.
    """
    known = tuple(known)
    fields: list[str] = []
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, str) and value and value != REDACTED and is_secret_name(key):
                out[key] = REDACTED
                fields.append(where)
            else:
                out[key], inner = redact_json(value, known, where)
                fields += inner
        return out, fields
    if isinstance(data, list):
        items = []
        for i, value in enumerate(data):
            item, inner = redact_json(value, known, f"{path}[{i}]")
            items.append(item)
            fields += inner
        return items, fields
    if isinstance(data, str):
        new, found = redact_text(data, known)
        return new, [f"{path or '(root)'}: {what}" for what in sorted({f.what for f in found})]
    return data, fields


# -- run time --------------------------------------------------------------------------------


def forwarded_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secret variables the agent gets (only those set and non-empty here)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in FORWARDED if env.get(name)}


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of this environment's secret-named variables, longest first."""
    env = os.environ if environ is None else environ
    values = {
        value for name, value in env.items()
        if is_secret_name(name) and len(value) >= MIN_SECRET_CHARS
    }
    return sorted(values, key=len, reverse=True)


class Scrubber:
    """Replaces known secret values (this environment's secrets) in text and files."""

    def __init__(self, values: list[str]) -> None:
        self.values = sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len,
                             reverse=True)

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
