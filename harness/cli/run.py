"""``harness run``: one experiment file without a study, through the same agent and runners."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from harness.cli.options import RUNNERS, choice
from harness.cli.render import StudyDisplay, console, run_line
from harness.cli.study import preamble
from harness.config.experiment import Runner
from harness.errors import Interrupted, RunFailure
from harness.results.reasons import FailureReason

SingleRunnerOpt = Annotated[
    Runner | None,
    typer.Option("--runner", parser=choice(RUNNERS), metavar="|".join(RUNNERS),
                 help="Where the run executes (default auto: a Docker container when an engine "
                 "answers, else a local process)."),
]
SingleOutputOpt = Annotated[
    Path | None,
    typer.Option("--output-dir", help="The folder the new run folder EXPID-TIMESTAMP is made in "
                 "(default results/single)."),
]


def run_cmd(
    file: Annotated[Path, typer.Argument(help="A single-experiment YAML file.")],
    runner: SingleRunnerOpt = None,
    output_dir: SingleOutputOpt = None,
) -> None:
    """Run one experiment without a study (same agent, runners and checks); exit 4 if it fails.

    The run folder is a new EXPID-YYYYmmddTHHMMSSZ under --output-dir (default results/single).

    A missing model or prompts file, or an image not built, is refused first (exit 2).
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
