"""The ``harness`` command line; the only place that turns errors into text and exit codes.

Each command group lives in its own module and only parses options, calls the library and
renders what comes back (``render``).
"""

from __future__ import annotations

import signal
import sys
from typing import Annotated

import typer
from rich.markup import escape

import harness
from harness.cli import bundle, doctor, images, report, run, study
from harness.cli.render import console, err_console
from harness.errors import HarnessError, StoppedBySignal
from harness.results.reasons import ExitCode

app = typer.Typer(
    name="harness",
    help="Measure the energy, throughput and latency of LLM inference, one container per run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(study.app, name="study")
app.add_typer(images.app, name="images")
app.add_typer(doctor.model_app, name="model")
app.add_typer(bundle.app, name="bundle")
app.command("run")(run.run_cmd)
app.command("report")(report.report_cmd)
app.command("doctor")(doctor.doctor)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"harness {harness.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version.", callback=_print_version,
                     is_eager=True),
    ] = False,
) -> None:
    """Measure the energy, throughput and latency of LLM inference, one container per run."""


def main() -> None:
    """Entry point of the ``harness`` console script: errors become one line and an exit code.

    An interrupted study exits 130 however many more Ctrl+C arrive while it winds down: the
    library restores the default handlers when a study ends, so one more SIGINT can land as a
    KeyboardInterrupt in the error path below; the outer handler catches it, and both paths
    ignore further signals before they print and exit.
    """
    _interrupt_with_our_own()
    try:
        try:
            app()  # standalone: typer prints usage errors (exit 2) and handles Exit itself
        except HarnessError as e:
            if e.exit_code == ExitCode.INTERRUPTED:
                _ignore_signals()
            err_console.print(f"[red]error:[/] {escape(str(e))}")
            sys.exit(ExitCode(e.exit_code))
    except KeyboardInterrupt:
        _ignore_signals()
        err_console.print("[red]interrupted[/]")
        sys.exit(ExitCode.INTERRUPTED)


def _interrupt_with_our_own() -> None:
    """Ctrl+C raises StoppedBySignal (a KeyboardInterrupt) instead of a plain KeyboardInterrupt.

    A plain one that passes through exec'd code (dataclass creation in a lazy import) makes
    CPython end the process by SIGINT (-2) however it was caught; see StoppedBySignal. A
    process started with Ctrl+C ignored (a background job) keeps ignoring it.
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: object) -> None:
    raise StoppedBySignal("interrupted by SIGINT")


def _ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
