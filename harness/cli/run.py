"""``harness run``: one experiment file without a study, through the same agent and runners."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.options import OutputDirOpt, RunnerOpt
from harness.cli.render import StudyDisplay, console, run_line
from harness.cli.study import preamble
from harness.errors import Interrupted, RunFailure
from harness.results.reasons import FailureReason


def run_cmd(
    file: Annotated[Path, typer.Argument(help="A single-experiment YAML file.")],
    runner: RunnerOpt = None,
    output_dir: OutputDirOpt = None,
) -> None:
    """Run one experiment without a study (same agent and runners); exit 4 if it fails.

    The run folder is a new EXPID-YYYYmmddTHHMMSSZ under --output-dir (default results/single).
    """
    from harness.controller.single import prepare_experiment

    display = StudyDisplay()
    single = prepare_experiment(file, runner=runner, output_dir=output_dir, observer=display)
    exp = single.experiment
    preamble(f"Experiment [bold]{exp.id}[/] ({exp.backend}/{exp.precision}/bs{exp.batch_size} "
             f"on {exp.device}) -> {single.run_dir}", single.runtime.name, single.runner_why,
             single.notes)
    try:
        record = single.execute()
    finally:
        display.close()
    console.print(run_line(record), highlight=False)
    if record.status == "interrupted":
        raise Interrupted(f"interrupted; partial files are in {single.run_dir}")
    if record.status != "done":
        raise RunFailure(f"the run failed ({record.reason}); its log and error.json are in "
                         f"{single.run_dir}", reason=record.reason or FailureReason.AGENT_ERROR)
    console.print(f"result: {single.run_dir / 'result.json'}", markup=False)
