"""The agent's entry point: ``python -m harness.agent``.

Reads the run spec (``/results/config.json`` by default), runs the measurement protocol and
writes result.json, or error.json and a non-zero exit code. It never imports docker or typer.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from harness.agent.cuda import require_gpu
from harness.config.datasets import dataset_file, named_files
from harness.config.load import load_experiment
from harness.errors import (
    EnvironmentProblem,
    HarnessError,
    RunFailure,
    StoppedBySignal,
    StorageProblem,
    UserInputError,
)
from harness.results.io import atomic_write_json, read_model
from harness.results.reasons import ExitCode, FailureReason
from harness.results.schema import RunError, RunInfo, RunSpec


def _interrupt_on_sigterm() -> None:
    """Turn the first SIGTERM (docker stop, the controller's Ctrl+C) into StoppedBySignal.

    As PID 1 in a container the agent would otherwise ignore SIGTERM until SIGKILL came; this
    way it unwinds (backend unloaded, sensors closed) and leaves error.json saying interrupted.
    Later signals are ignored so that writing error.json is not cut short.
    """

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise StoppedBySignal(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m harness.agent", description=__doc__)
    parser.add_argument("--config", type=Path, help="run spec JSON (default /results/config.json)")
    parser.add_argument(
        "--experiment", type=Path, help="a single experiment YAML/JSON instead of a run spec"
    )
    parser.add_argument(
        "--out", type=Path,
        help="output folder (default: the config's folder; with --experiment, a new "
        "EXPID-TIMESTAMP folder is made inside it, default /results)",
    )
    return parser.parse_args(argv)


def _spec_from_experiment(path: Path) -> RunSpec:
    """A run spec for a single experiment file (compose and ad-hoc use).

    The files it names are read from its own folder when relative (with Compose, the file is
    /experiment.yaml: ``dataset: datasets/NAME.jsonl`` is read from $DATASETS_DIR at /datasets).
    """
    exp = load_experiment(path)
    datasets = []
    for field, value in named_files(exp):
        entry, _ = dataset_file(field, value, path.parent)
        datasets.append(entry.model_copy(update={"agent_path": entry.path}))
    return RunSpec(
        run=RunInfo(study="single", experiment_id=exp.id, cycle=1, run_id=f"{exp.id}-c1"),
        experiment=exp,
        model_path=exp.model,
        runner="single",
        datasets=datasets,
    )


def failure_of(error: BaseException) -> tuple[FailureReason, ExitCode]:
    """The reason recorded in error.json and the exit code for an error that ended the run."""
    if isinstance(error, KeyboardInterrupt):
        return FailureReason.INTERRUPTED, ExitCode.INTERRUPTED
    if isinstance(error, StorageProblem):  # the controller stops the study on this code
        return FailureReason.STORAGE_ERROR, ExitCode.STORAGE
    if isinstance(error, RunFailure):
        return error.reason, ExitCode.FAILED
    if isinstance(error, UserInputError):
        return FailureReason.INPUT_INVALID, ExitCode.FAILED
    if isinstance(error, EnvironmentProblem):
        return FailureReason.ENVIRONMENT, ExitCode.FAILED
    if isinstance(error, HarnessError):
        return FailureReason.AGENT_ERROR, ExitCode.FAILED
    if isinstance(error, MemoryError):
        return FailureReason.OUT_OF_MEMORY, ExitCode.FAILED
    return FailureReason.AGENT_EXCEPTION, ExitCode.FAILED


def main(argv: list[str] | None = None) -> int:
    """Run one experiment; return the process exit code."""
    args = _parse(argv)
    single: RunSpec | None = None
    if args.experiment is not None:
        try:
            single = _spec_from_experiment(args.experiment)
        except UserInputError as e:
            print(f"[agent] error: {e}", file=sys.stderr, flush=True)
            return e.exit_code
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = (args.out or Path("/results")) / f"{single.run.experiment_id}-{stamp}"
    else:
        config = args.config or Path("/results/config.json")
        out = args.out or config.parent
    run_id = "unknown"
    try:
        if (out / "result.json").exists():
            raise RunFailure(
                f"{out / 'result.json'} already exists; refusing to overwrite an earlier result",
                reason=FailureReason.RESULT_EXISTS,
            )
        if single is not None:
            spec = single
            atomic_write_json(out / "config.json", spec)
            print(f"[agent] writing to {out}", flush=True)
        else:
            try:
                spec = read_model(config, RunSpec)
            except FileNotFoundError as e:
                raise RunFailure(f"{config}: no run spec found", reason=FailureReason.CONFIG_MISSING) from e
            except ValueError as e:
                raise RunFailure(str(e), reason=FailureReason.CONFIG_INVALID) from e
        run_id = spec.run.run_id
        require_gpu(spec.experiment.device)  # a cuda run on no GPU stops here, reason no_gpu
        from harness.agent import protocol  # imported late: it pulls numpy and the sensors

        exp = spec.experiment
        load = f"batch {exp.batch_size}" if exp.mode == "offline" else f"serving {exp.serving.load_text()}"
        print(f"[agent] run {run_id}: {exp.backend} {exp.precision} {load} on {exp.device}",
              flush=True)
        result = protocol.run(spec, out)
        print(
            f"[agent] done: {result.tokens.output_tokens} output tokens in "
            f"{result.timings.window_s:.2f} s, {result.throughput.output_tokens_per_s:.1f} tok/s, "
            f"energy {result.energy.energy_method}",
            flush=True,
        )
        return ExitCode.OK
    except BaseException as e:  # noqa: BLE001 - the boundary: everything becomes error.json
        reason, code = failure_of(e)
        if isinstance(e, SystemExit):
            raise
        # the project's own messages are written for people; another exception's class names it
        message = (str(e) if isinstance(e, (HarnessError, StoppedBySignal))
                   else f"{type(e).__name__}: {e}")
        print(f"[agent] failed ({reason}): {message}", file=sys.stderr, flush=True)
        try:
            atomic_write_json(
                out / "error.json",
                RunError(
                    run_id=run_id, reason=reason, message=message,
                    traceback=traceback.format_exc(),
                ),
            )
        except HarnessError as write_error:
            print(f"[agent] cannot write error.json: {write_error}", file=sys.stderr)
            if isinstance(write_error, StorageProblem):
                code = ExitCode.STORAGE
        return code


if __name__ == "__main__":
    _interrupt_on_sigterm()
    sys.exit(main())
