#!/usr/bin/env bash
# Run the agent directly (no Docker) on an NVIDIA GPU machine and print what NVML measured:
# energy, J/token, idle W, sample count, prefill/decode split and validity warnings.
#
# Usage: scripts/gpu-check.sh [WHEEL_DIR]
#   WHEEL_DIR  a folder of wheels used when pydantic is missing on the machine; made on a
#              machine with PyPI access for the GPU machine's Python, e.g.
#                pip download -d wheels --only-binary=:all: --python-version 3.11 \
#                    --platform manylinux2014_x86_64 'pydantic>=2.6,<3'
#              They are installed with --no-index into a private folder, not the system.
# Environment (all optional):
#   PYTHON        interpreter with torch (CUDA), transformers, nvidia-ml-py (default python3)
#   CHECK_DIR     where the model, experiment and run go (default $OUT if set, else a temp dir)
#   LAYERS, HIDDEN, INTERMEDIATE, HEADS, KV_HEADS   model shape (default 8, 2048, 5632, 16, 8:
#                 about 380M random parameters, written in ~10-20 s)
#   BATCH, PROMPTS, INPUT_TOKENS, OUTPUT_TOKENS, MIN_WINDOW_S, BASELINE_S, PRECISION
#   RUN_PYTEST=1  also run tests/gpu (needs pytest on the machine)
#   DEVICE=cpu    smoke-test this script without a GPU (energy is then RAPL or unavailable)
# The measured window lasts at least MIN_WINDOW_S (default 15 s), so the GPU is busy for
# longer than 10 s in the window alone, and again in the prefill window.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-python3}
WHEELS=${1:-}
DIR=${CHECK_DIR:-${OUT:-$(mktemp -d /tmp/harness-gpu-check.XXXXXX)}}
mkdir -p "$DIR"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

say() { printf '[gpu-check] %s\n' "$*"; }

DEVICE=${DEVICE:-cuda}
HAVE_PYDANTIC='import pydantic, sys; sys.exit(int(pydantic.VERSION.split(".")[0]) < 2)'
if ! "$PY" -c "$HAVE_PYDANTIC" 2>/dev/null; then
    if [[ -z "$WHEELS" ]]; then
        say "pydantic >= 2 is not installed; pass a folder of wheels: $0 WHEEL_DIR" >&2
        exit 2
    fi
    say "installing pydantic from $WHEELS (no index) into $DIR/pydeps"
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" --target "$DIR/pydeps" \
        'pydantic>=2.6,<3'
    export PYTHONPATH="$DIR/pydeps:$PYTHONPATH"
    "$PY" -c "$HAVE_PYDANTIC" || { say "pydantic from $WHEELS does not import" >&2; exit 2; }
fi
for module in torch transformers pynvml yaml numpy safetensors tokenizers pydantic; do
    "$PY" -c "import $module" 2>/dev/null || { say "missing Python module: $module" >&2; exit 2; }
done
if [[ "$DEVICE" == cuda ]]; then
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
        || { say "torch sees no CUDA device" >&2; exit 2; }
fi
nvidia-smi --query-gpu=index,name,uuid,driver_version,power.limit,persistence_mode,temperature.gpu \
    --format=csv 2>/dev/null || say "(nvidia-smi not available; NVML is read through Python)"

MODEL="$DIR/model"
if [[ ! -f "$MODEL/config.json" ]]; then
    say "writing a random-weight model to $MODEL"
    start=$(date +%s)
    "$PY" - "$MODEL" <<EOF
import sys
from pathlib import Path
from harness.models.tiny import write_tiny_model
write_tiny_model(
    Path(sys.argv[1]), layers=${LAYERS:-8}, hidden_size=${HIDDEN:-2048},
    intermediate_size=${INTERMEDIATE:-5632}, heads=${HEADS:-16}, kv_heads=${KV_HEADS:-8},
)
EOF
    say "model written in $(( $(date +%s) - start )) s ($(du -sh "$MODEL" | cut -f1))"
fi

cat > "$DIR/experiment.yaml" <<EOF
model: $MODEL
backend: pytorch
device: $DEVICE
precision: ${PRECISION:-bf16}
batch_size: ${BATCH:-32}
workload:
  dataset: synthetic
  num_prompts: ${PROMPTS:-64}
  input_tokens: ${INPUT_TOKENS:-512}
  output_tokens: ${OUTPUT_TOKENS:-128}
  seed: 42
measurement:
  warmup_batches: 2
  baseline_s: ${BASELINE_S:-5}
  min_window_s: ${MIN_WINDOW_S:-15}
  sample_interval_ms: 100
  prefill_split: true
pytorch: {attn_implementation: sdpa}
EOF

RUN="$DIR/run-$(date +%Y%m%dT%H%M%S)"
say "running the agent: $PY -m harness.agent --experiment $DIR/experiment.yaml --out $RUN"
start=$(date +%s)
status=0
"$PY" -m harness.agent --experiment "$DIR/experiment.yaml" --out "$RUN" || status=$?
say "agent exit code $status after $(( $(date +%s) - start )) s"
if [[ $status -ne 0 ]]; then
    [[ -f "$RUN/error.json" ]] && cat "$RUN/error.json"
    exit "$status"
fi

"$PY" - "$RUN" <<'EOF'
import csv
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
r = json.loads((run / "result.json").read_text())
e, p, t, w = r["energy"], r["prefill"], r["tokens"], r["warmup"]
sensor = r["environment"].get("sensor", {})


def f(value, fmt=".3f"):
    return "unknown" if value is None else format(value, fmt)


print("=== gpu-check result ===")
for dev in sensor.get("devices", []):
    print(f"gpu          {dev['device']}: {dev['name']} {dev['uuid']} limit {dev['power_limit_w']} W "
          f"persistence {dev['persistence_mode']} MIG {dev['mig_mode']} ECC {dev['ecc_mode']}")
print(f"driver       {sensor.get('driver_version')} CUDA {sensor.get('cuda_driver_version')} "
      f"(selected by: {sensor.get('selected_by')})")
print(f"method       {e['energy_method']}  {e.get('unavailable_reason') or ''}")
print(f"window       {f(r['timings']['window_s'], '.2f')} s, {t['iterations']} passes, "
      f"{t['requests']} requests, {t['output_tokens']} output tokens")
print(f"energy       {f(e['energy_j'], '.1f')} J (dynamic {f(e['dynamic_energy_j'], '.1f')} J)")
print(f"J/token      {f(e['j_per_token'], '.5f')} (per output token {f(e['j_per_output_token'], '.5f')})")
print(f"idle         {f(e['idle_power_w'], '.1f')} W over {f(e['idle_window_s'], '.1f')} s "
      f"({e['idle_samples']} samples)")
print(f"power        mean {f(e['mean_power_w'], '.1f')} W, peak {f(e['peak_power_w'], '.1f')} W")
print(f"samples      {e['samples']} in the window at {e['sample_interval_ms']} ms; sampler CPU "
      f"{f(e['sampler_cpu_s'], '.3f')} s")
print(f"prefill      {f(p['prefill_energy_j'], '.1f')} J over {f(p['prefill_window_s'], '.2f')} s; "
      f"decode {f(p['decode_energy_j'], '.1f')} J")
print(f"throughput   {r['throughput']['output_tokens_per_s']:.1f} output tok/s; "
      f"TTFT p50 {f(r['latency']['ttft']['p50_s'], '.4f')} s, TPOT p50 "
      f"{f(r['latency']['tpot']['p50_s'], '.5f')} s")
print(f"memory       torch peak {r['compute']['peak_memory_allocated_bytes']} B, NVML used peak "
      f"{r['compute']['peak_memory_used_bytes']} B")
print(f"warmup       {w['batches']} batches, final CV {f(w['final_cv'])}")
for dev in e["devices"]:
    print(f"device       {dev['device']}: {f(dev['energy_j'], '.1f')} J via {dev['energy_method']}, "
          f"temperature {dev['temperature_start_c']}->{dev['temperature_end_c']} C "
          f"(max {dev['temperature_max_c']})")
for note in e.get("notes", []):
    print(f"note         {note}")
with (run / "timeseries.csv").open() as fh:
    rows = list(csv.DictReader(fh))
phases = {}
for row in rows:
    phases[row["phase"]] = phases.get(row["phase"], 0) + 1
print(f"timeseries   {len(rows)} rows {phases}")
print(f"warnings     {len(r['warnings'])}")
for warning in r["warnings"]:
    print(f"  - {warning['code']} [{warning.get('phase') or '-'}]: {warning['message']}")
EOF
say "files in $RUN"

if [[ "${RUN_PYTEST:-0}" == "1" ]]; then
    "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" tests/gpu
fi
