"""The CLI's Slurm side: run a prepared study as Slurm jobs, and what status shows of them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

from harness.cli.render import Col, console
from harness.errors import EnvironmentProblem, UserInputError

if TYPE_CHECKING:
    from harness.controller.lifecycle import Prepared
    from harness.results.schema import Manifest


def slurm_study(prepared: Prepared, *, detach: bool) -> Manifest:
    """Submit and (unless detached) track a prepared study's runs as Slurm jobs."""
    from harness.controller.slurm.commands import SlurmCli
    from harness.controller.slurm.executor import SlurmStudy
    from harness.controller.slurm.track import live_jobs

    why = SlurmCli.available()
    if why is not None:
        raise EnvironmentProblem(why)
    run = prepared.run
    study = SlurmStudy(run.study, run.plan, prepared.study_dir, run.manifest,
                       observer=run.observer, keep_failed=run.keep_failed, detach=detach)
    console.print(f"Study [bold]{escape(run.study.name)}[/]: {len(run.plan.runs)} runs -> "
                  f"{escape(str(prepared.study_dir))}")
    console.print(f"Executor: [bold]slurm[/] (one job per run, at most "
                  f"{study.options.max_jobs} at once; runner {run.study.execution.runner} "
                  "on the nodes)")
    for text in prepared.notes:
        console.print(f"note: {text}", markup=False)
    live = live_jobs(run.manifest)
    if live:
        console.print(f"note: re-attaching to {len(live)} Slurm jobs submitted earlier "
                      f"({', '.join(sorted(live.values()))}); they are not submitted again",
                      markup=False)
    return study.execute()


def check_detach(prepared: Prepared, detach: bool) -> None:
    """Refuse --detach for a study that does not use the slurm executor."""
    if detach and prepared.run.study.execution.executor != "slurm":
        raise UserInputError("--detach needs execution.executor: slurm (a local study runs "
                             "in this process)")


def refresh_status(directory: Path) -> list[str]:
    """Settle a detached Slurm study's finished jobs; lines saying where its jobs stand."""
    from harness.controller.slurm.commands import SlurmCli
    from harness.controller.slurm.executor import refresh
    from harness.results.manifest import load

    manifest = load(directory)
    if not any(r.slurm for r in manifest.runs):
        return []
    if SlurmCli.available() is None:
        refresh(directory)
        manifest = load(directory)
    else:
        return ["Slurm's tools are not on PATH here: states are as last recorded"]
    live = [r for r in manifest.runs if r.status == "running" and r.slurm]
    if not live:
        return []
    states = Counter(r.slurm.state for r in live if r.slurm)
    return [f"Slurm jobs: {', '.join(f'{k}: {v}' for k, v in sorted(states.items()))}",
            *[f"  run {r.run_id}: job {r.slurm.job_id} {r.slurm.state}"
              + (f" on {r.slurm.node}" if r.slurm.node else "") for r in live if r.slurm]]


def slurm_cols(manifest: Manifest) -> list[Col]:
    """The Slurm job and node columns of ``study status --wide`` (none for a local study)."""
    if not any(r.slurm for r in manifest.runs):
        return []
    return [Col("job", "slurm job", spec="", left=True, unknown=""),
            Col("node", "node", spec="", left=True, unknown="")]
