"""Load generator: does it send at the rate asked, and what CPU does it cost per request?

For each target rate it plans ``--requests`` streamed completions with Poisson arrivals
(``harness.agent.serving.requests.arrival_offsets``, seeded) and sends them with the agent's
load generator (``LoadGenerator``), then prints:
  achieved     requests sent / (last send - start), and its difference from the target
               (the arrivals are scaled so that the last is due at requests / rate: on
               schedule, achieved = target)
  lag p99/max  how late requests went out against their send times
  CPU/request  CPU time of the event loop's thread (time.thread_time) per request: parsing
               every server-sent event and counting its tokens included
  done         requests that completed, and output tokens/s

The server is, by default, the fake OpenAI-compatible server of the tests
(tests/plugins/fake_serving/server.py) started as its own process: a continuous batch of
``--max-running`` requests, one token per request every ``--step-s``, each an event as vLLM
streams them. ``--port`` targets a server that is already running instead (``--model`` names
its model; ``--wait`` waits for its /health), e.g. vLLM's inside its image, the benchmark run
in the same container (docs/serving.md, section 8, has the command):

  python benchmarks/loadgen.py [--rates 10,50,200] [--requests 400] [--output-tokens 16]
                               [--port P --model NAME [--wait 300]] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.agent.serving.client import request  # noqa: E402
from harness.agent.serving.loadgen import LoadGenerator  # noqa: E402
from harness.agent.serving.requests import PlannedRequest, arrival_offsets  # noqa: E402
from harness.agent.serving.server import free_port  # noqa: E402
from harness.config.experiment import Decoding  # noqa: E402
from harness.config.serving import Serving  # noqa: E402

PLUGINS = REPO / "tests" / "plugins"


def wait_ready(port: int, timeout_s: float) -> None:
    """Poll /health until it answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if asyncio.run(request("127.0.0.1", port, "GET", "/health")).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"no server answered /health on port {port} within {timeout_s:g} s")


def start_fake(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], int]:
    """The fake server as its own process on a free port."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), str(REPO)]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_serving.server", "--port", str(port),
         "--step-s", str(args.step_s), "--max-running", str(args.max_running)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path("/tmp"))
    wait_ready(port, 30)
    return proc, port


def one_rate(port: int, model: str, rate: float, args: argparse.Namespace) -> dict[str, float]:
    """Send ``args.requests`` requests at ``rate`` and measure the generator."""
    offsets = arrival_offsets(Serving(request_rate=rate), args.requests, args.seed)
    assert offsets is not None
    prompt = list(range(3, 3 + args.input_tokens))
    planned = [PlannedRequest(i, prompt, args.output_tokens, offsets[i])
               for i in range(args.requests)]
    gen = LoadGenerator(port, model, Decoding(), request_timeout_s=600)
    got = gen.run_sync(planned)
    sent = [r.sent_s for r in got.records if r.sent_s is not None]
    lags = sorted(r.sent_s - r.due_s for r in got.records
                  if r.sent_s is not None and r.due_s is not None)
    ok = [r for r in got.records if r.status == "ok"]
    achieved = len(sent) / (max(sent) - got.start_s)
    tokens = sum(r.output_tokens for r in ok)
    return {
        "rate": rate, "achieved": achieved, "diff": achieved / rate - 1,
        "lag_p99": lags[min(len(lags) - 1, int(0.99 * len(lags)))], "lag_max": lags[-1],
        "cpu_ms": 1000 * (got.client_cpu_s or 0.0) / len(planned), "ok": len(ok),
        "tok_s": tokens / (got.end_s - got.start_s), "events": statistics.mean(
            len(r.arrivals) for r in ok) if ok else 0.0,
    }


def main() -> None:
    """Run every rate and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10,50,200")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--input-tokens", type=int, default=32)
    parser.add_argument("--output-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, help="an already running server (default: fake)")
    parser.add_argument("--model", default="fake", help="the model name its requests give")
    parser.add_argument("--wait", type=float, default=0.0, help="wait this long for /health")
    parser.add_argument("--step-s", type=float, default=0.005, help="fake server: step time")
    parser.add_argument("--max-running", type=int, default=64, help="fake server: batch limit")
    args = parser.parse_args()
    proc = None
    if args.port is None:
        proc, port = start_fake(args)
        where = f"the fake server (batch {args.max_running}, {args.step_s * 1000:g} ms/step)"
    else:
        port = args.port
        if args.wait:
            wait_ready(port, args.wait)
        where = f"the server on 127.0.0.1:{port} (model {args.model})"
    print(f"load generator against {where}: {args.requests} requests per rate, "
          f"{args.input_tokens} prompt tokens, {args.output_tokens} output tokens each")
    print(f"{'target/s':>9} {'achieved/s':>11} {'diff':>7} {'lag p99 ms':>10} {'lag max ms':>10} "
          f"{'CPU ms/req':>10} {'events/req':>10} {'ok':>5} {'out tok/s':>9}")
    try:
        for rate in (float(r) for r in args.rates.split(",")):
            m = one_rate(port, args.model, rate, args)
            print(f"{m['rate']:9g} {m['achieved']:11.3f} {m['diff']:+7.2%} "
                  f"{m['lag_p99'] * 1000:10.2f} {m['lag_max'] * 1000:10.2f} {m['cpu_ms']:10.3f} "
                  f"{m['events']:10.1f} {m['ok']:5d} {m['tok_s']:9.1f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
