"""Validate the harness's energy figures on a real NVIDIA GPU (issue 11, item 6).

Runs on a lent GPU machine with no Docker and no network (torch, transformers, nvidia-ml-py,
typer, pyyaml, numpy installed; pydantic carried as wheels, ``--wheels``), in about
8 minutes on an H200:

1. writes a random-weight Llama of about 1 B parameters with the harness's model writer;
2. times 1000 calls of nvmlDeviceGetPowerUsage on GPU 0 and prints their mean, the figure
   benchmarks/sampler_cost.py takes as ``--call-latency-ms``;
3. starts an independent power logger in a separate process: NVML's instantaneous power
   (NVML_FI_DEV_POWER_INSTANT where the driver has it, else nvmlDeviceGetPowerUsage) and the
   energy counter of the GPU, every 10 ms, on the same clock (time.perf_counter);
4. runs a study with the local runner: bf16, batch 1 and 32, 5 cycles;
5. prints, per run, energy by the counter (the harness) and by the logger's own integration
   over the harness's exact window edges, pre-load and loaded idle power, J/token with its
   uncertainty, the device (UUID) check, and per batch size the CV over cycles. A result
   without window edges (energy unavailable) cannot be compared: it is listed as skipped and
   the script exits 1.

    python scripts/gpu_validate.py --out OUT --wheels WHEELS      # the real GPU
    python scripts/gpu_validate.py --out OUT --simulated --small   # a dry run anywhere

Carrying pydantic (``--wheels WHEELS``): the harness needs pydantic 2, which such a machine
may lack. Download its wheels where PyPI is reachable, for the GPU machine's Python (3.12 on
the lent H200s; check with ``python3 -V`` there):

    pip download -d WHEELS --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 'pydantic>=2.6,<3'

That is five wheels, about 2.7 MiB: pydantic, pydantic-core (the only compiled one, so the
one tied to the Python version), typing-extensions, annotated-types and typing-inspection.
``--wheels`` installs them with ``pip install --no-index --find-links WHEELS --target TMP``
into a temporary folder, puts it first on sys.path and on PYTHONPATH (which the local
runner passes to each run's agent), and removes it at the end. pip's ``--target`` installs
every dependency there, so carry typing-extensions even where the machine has it.

With ``--simulated`` the study runs on simulated GPUs (the engine on the CPU), the NVML
timing is of the simulated library, and the logger reads the simulator's truth file instead of
NVML, so the script itself is tested here; its figures then say nothing about hardware.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: about 1.04 B non-embedding parameters (22 layers of hidden 2048, MLP 5632, 16 heads, 8 KV
#: heads: TinyLlama-1.1B's shape), written as random float32 weights
FULL_MODEL = {"layers": 22, "hidden_size": 2048, "intermediate_size": 5632, "heads": 16,
              "kv_heads": 8}
SMALL_MODEL = {"layers": 1, "hidden_size": 64, "intermediate_size": 128, "heads": 4,
               "kv_heads": 2}


def study_text(model: Path, cycles: int, simulated: bool, small: bool) -> str:
    """The validation study: bf16 (fp32 for the CPU dry run), batch 1 and 32, local runner."""
    device, precision = ("cpu", "fp32") if simulated else ("cuda", "bf16")
    tokens = (16, 8) if small else (128, 64)
    window = 1.0 if small else 10.0
    sim = ("\n  simulated_gpus: {count: 1, counter_period_ms: 20}" if simulated else "")
    return f"""name: gpu-validate
description: Counter energy against an independent 10 ms power log, on a random-weight Llama.
experiment:
  model: {model}
  backend: pytorch
  device: {device}
  precision: {precision}
  batch_size: 1
  workload: {{num_prompts: 32, input_tokens: {tokens[0]}, output_tokens: {tokens[1]}, seed: 7}}
  measurement:
    warmup_batches: 2
    baseline_s: {1.0 if small else 4.0}
    loaded_idle_s: {1.0 if small else 4.0}
    min_window_s: {window}
    gpu_min_window_s: {window}
    min_counter_updates: {10 if small else 60}
    sample_interval_ms: 50
    prefill_split: false
sweep:
  batch_size: [1, 32]
execution:
  cycles: {cycles}
  order: interleaved
  runner: local
  gpus: [0]{sim}
"""


#: what --wheels installs: the harness's own pin of pydantic (pyproject.toml)
PYDANTIC = "pydantic>=2.6,<3"
#: calls of nvmlDeviceGetPowerUsage timed for their mean
NVML_CALLS = 1000


def use_wheels(wheels: Path) -> Path:
    """Install pydantic from ``wheels`` (no index) into a temporary folder put first on the path.

    The folder goes on sys.path for this process and on PYTHONPATH for its children (the study's
    CLI and, through the local runner, each agent). The caller removes it.
    """
    if not wheels.is_dir():
        raise SystemExit(f"--wheels {wheels}: no such folder of wheels")
    target = Path(tempfile.mkdtemp(prefix="gpu-validate-pydeps-"))
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--no-index", "--find-links", str(wheels), "--target", str(target), PYDANTIC]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        raise SystemExit(
            f"--wheels {wheels}: pip could not install {PYDANTIC!r} from it for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} (expected wheels of pydantic, "
            "pydantic-core for this Python, typing-extensions, annotated-types and "
            f"typing-inspection):\n{proc.stderr.strip()}")
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target),
                                                             os.environ.get("PYTHONPATH")]))
    print(f"[validate] pydantic from {wheels} installed in {target}", flush=True)
    return target


def power_call_ms(nvml: Any, calls: int = NVML_CALLS) -> float:
    """Mean wall time of one nvmlDeviceGetPowerUsage call on GPU 0, in milliseconds."""
    nvml.nvmlInit()
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(0)
        nvml.nvmlDeviceGetPowerUsage(handle)  # the first call may set things up
        start = time.perf_counter()
        for _ in range(calls):
            nvml.nvmlDeviceGetPowerUsage(handle)
        return (time.perf_counter() - start) / calls * 1000
    finally:
        nvml.nvmlShutdown()


def time_power_calls(simulated: bool) -> float:
    """Time NVML's power call on GPU 0 (the simulated library's in a dry run) and print it."""
    if simulated:
        from harness.testing.simgpu.config import SimulatedGpus
        from harness.testing.simgpu.nvml import SimulatedNvml

        nvml: Any = SimulatedNvml(SimulatedGpus())
        what = "the SIMULATED library (says nothing about a GPU)"
    else:
        import pynvml

        nvml, what = pynvml, "GPU 0"
    mean_ms = power_call_ms(nvml)
    print(f"[validate] nvmlDeviceGetPowerUsage on {what}: mean {mean_ms:.4f} ms over "
          f"{NVML_CALLS} calls (python benchmarks/sampler_cost.py --call-latency-ms "
          f"{mean_ms:.4f})", flush=True)
    return mean_ms


# --- the independent logger (its own process) ---------------------------------------------


def log_power(out: Path, interval_ms: int) -> None:
    """Log GPU 0's power and energy counter every ``interval_ms`` until SIGTERM."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    instant = getattr(pynvml, "NVML_FI_DEV_POWER_INSTANT", None)
    stop = False

    def halt(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, halt)

    def power_mw() -> float:
        if instant is not None:
            try:
                (value,) = pynvml.nvmlDeviceGetFieldValues(handle, [instant])
                if value.nvmlReturn == pynvml.NVML_SUCCESS:
                    return float(value.value.uiVal)
            except pynvml.NVMLError:
                pass
        return float(pynvml.nvmlDeviceGetPowerUsage(handle))

    with out.open("w", encoding="utf-8") as fh:
        fh.write("t_s,power_mw,energy_mj\n")
        next_t = time.perf_counter()
        while not stop:
            t = time.perf_counter()
            fh.write(f"{t:.6f},{power_mw():.1f},"
                     f"{pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)}\n")
            next_t += interval_ms / 1000
            time.sleep(max(0.0, next_t - time.perf_counter()))
    pynvml.nvmlShutdown()


def logged_energy(log: Path, t0: float, t1: float) -> tuple[float | None, float | None]:
    """Energy over [t0, t1] from the log: trapezoid of its power, and its counter's difference."""
    rows = []
    for line in log.read_text(encoding="utf-8").splitlines()[1:]:
        t, p, e = line.split(",")
        rows.append((float(t), float(p) / 1000, float(e) / 1000))
    inside = [r for r in rows if t0 <= r[0] <= t1]
    if len(inside) < 2:
        return None, None
    trapezoid = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(inside, inside[1:], strict=False))
    # extend to the edges with the nearest readings
    trapezoid += (inside[0][0] - t0) * inside[0][1] + (t1 - inside[-1][0]) * inside[-1][1]
    return trapezoid, inside[-1][2] - inside[0][2]


# --- the study and the comparison ----------------------------------------------------------


def run_study(study: Path, out: Path) -> Path:
    """Run the study with the harness's CLI; return its folder."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                   os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-m", "harness.cli", "study", "run", str(study),
                    "--output-dir", str(out)], check=False, env=env)
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return folder


def compare(folder: Path, log: Path | None, truth_of: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows comparing each run with window edges, and the runs skipped for lacking them.

    A row holds the harness's figures beside the independent ones; a run whose result has no
    window edges (energy unavailable) cannot be compared and is named in the second list.
    """
    from harness.results.io import read_model
    from harness.results.schema import ExperimentResult

    rows, skipped = [], []
    for path in sorted(folder.glob("runs/*/result.json")):
        result = read_model(path, ExperimentResult)
        edges = result.energy.phase_edges_s.get("window")
        if edges is None:
            skipped.append(f"{result.run.run_id}: no window edges in {path} (energy "
                           f"{result.energy.energy_method}: {result.energy.unavailable_reason})")
            continue
        w0, w1 = edges
        if log is not None:
            independent, counter = logged_energy(log, w0, w1)
        else:
            independent, counter = truth_of(path.parent, result, w0, w1), None
        rows.append(comparison_row(result, independent, counter))
    return rows, skipped


def comparison_row(result: Any, independent: float | None, counter: float | None) -> dict[str, Any]:
    """The harness's figures of one run beside the independently logged energy."""
    e = result.energy
    u = e.uncertainty.get("j_per_output_token")
    return {
        "run": result.run.run_id, "batch": result.experiment.batch_size,
        "energy_counter_j": e.energy_j, "energy_logged_j": independent,
        "logged_counter_j": counter,
        "ratio": (e.energy_j / independent) if e.energy_j and independent else None,
        "energy_u95_j": e.uncertainty["energy_j"].expanded if "energy_j" in e.uncertainty
        else None,
        "preload_idle_w": e.idle_power_w, "loaded_idle_w": e.loaded_idle_power_w,
        "j_per_output_token": e.j_per_output_token,
        "j_per_output_token_u95": u.expanded if u else None,
        "uuid_check": (result.environment.get("device_check") or {}).get("verdict"),
        "method": e.energy_method, "readout": e.readout,
        "warnings": [w.code for w in result.warnings],
    }


def cv_by_batch(rows: list[dict[str, Any]]) -> dict[int, float | None]:
    """Coefficient of variation of J/output token over the cycles of each batch size."""
    out: dict[int, float | None] = {}
    for batch in sorted({r["batch"] for r in rows}):
        values = [r["j_per_output_token"] for r in rows
                  if r["batch"] == batch and r["j_per_output_token"] is not None]
        out[batch] = (statistics.stdev(values) / statistics.mean(values)
                      if len(values) >= 2 else None)
    return out


def simulated_truth(run_dir: Path, result: Any, t0: float, t1: float) -> float:
    """The simulator's own energy over [t0, t1] (the dry run's stand-in for the logger)."""
    from harness.testing.simgpu.truth import TRUTH_FILE, read_truth, total_energy_between

    truth = read_truth(run_dir / TRUTH_FILE)
    uuids = [d["uuid"] for d in result.environment["sensor"]["devices"]]
    return total_energy_between(truth, uuids, t0, t1)


def fmt(value: Any, spec: str = ".4g") -> str:
    """A figure as printed: n/a when unknown."""
    return "n/a" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def report(rows: list[dict[str, Any]], skipped: list[str], nvml_call_ms: float, out: Path) -> int:
    """Print the comparison, write validate.json; 0 when every run was measured and compared."""
    cols = ["run", "batch", "energy_counter_j", "energy_logged_j", "ratio", "energy_u95_j",
            "preload_idle_w", "loaded_idle_w", "j_per_output_token", "j_per_output_token_u95",
            "uuid_check"]
    print(" ".join(f"{c:>14}" for c in cols))
    for r in rows:
        print(" ".join(f"{fmt(r[c]):>14}" for c in cols))
    for line in skipped:
        print(f"skipped (not compared): {line}")
    cv = cv_by_batch(rows)
    print("CV of J/output token over cycles: "
          + ", ".join(f"batch {b}: {fmt(v, '.2%') if v is not None else 'n/a'}"
                      for b, v in cv.items()))
    inside = [r for r in rows if r["ratio"] is not None and r["energy_u95_j"] is not None
              and abs(r["energy_counter_j"] - r["energy_logged_j"]) <= r["energy_u95_j"]]
    print(f"counter energy within its U95 of the independent energy: {len(inside)}/{len(rows)}"
          + (f" ({len(skipped)} more skipped)" if skipped else ""))
    print(f"warnings: {sorted({w for r in rows for w in r['warnings']})}")
    print(f"nvmlDeviceGetPowerUsage mean over {NVML_CALLS} calls: {nvml_call_ms:.4f} ms")
    (out / "validate.json").write_text(json.dumps(
        {"rows": rows, "skipped": skipped, "cv": cv,
         "nvml_power_call_ms": nvml_call_ms, "nvml_power_calls": NVML_CALLS}, indent=2),
        encoding="utf-8")
    measured = bool(rows) and not skipped and all(r["method"] != "unavailable" for r in rows)
    return 0 if measured else 1


def validate(args: argparse.Namespace) -> int:
    """Write the model, time NVML, log power beside the study, and report the comparison."""
    from harness.models import write_tiny_model

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    t0 = time.perf_counter()
    if not (model / "config.json").is_file():
        write_tiny_model(model, **(SMALL_MODEL if args.small else FULL_MODEL))
    print(f"[validate] model written in {time.perf_counter() - t0:.0f} s: {model}", flush=True)
    nvml_call_ms = time_power_calls(args.simulated)
    study = out / "study.yaml"
    study.write_text(study_text(model, args.cycles, args.simulated, args.small), encoding="utf-8")
    log = out / "power-log.csv"
    logger = None
    if not args.simulated:
        logger = subprocess.Popen([sys.executable, __file__, "--log-power", str(log)])
    try:
        folder = run_study(study, out / "results")
    finally:
        if logger is not None:
            logger.send_signal(signal.SIGTERM)
            logger.wait(timeout=30)
    rows, skipped = compare(folder, None if args.simulated else log, simulated_truth)
    status = report(rows, skipped, nvml_call_ms, out)
    print(f"[validate] total {time.perf_counter() - t0:.0f} s; {out / 'validate.json'}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Parse the options; carry pydantic in from --wheels if asked, then validate."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-validate")))
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--simulated", action="store_true", help="dry run on simulated GPUs")
    parser.add_argument("--small", action="store_true", help="a tiny model and short windows")
    parser.add_argument("--wheels", type=Path, help="a folder of pydantic's wheels for this "
                        "Python, installed offline into a temporary folder (see the docstring)")
    parser.add_argument("--log-power", type=Path, help=argparse.SUPPRESS)  # the logger process
    args = parser.parse_args(argv)
    if args.log_power is not None:
        log_power(args.log_power, 10)
        return 0
    pydeps = use_wheels(args.wheels) if args.wheels is not None else None
    try:
        return validate(args)
    finally:
        if pydeps is not None:
            shutil.rmtree(pydeps, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
