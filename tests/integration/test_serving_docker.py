"""studies/serving-cpu.yaml end to end in containers: vLLM's server under load, the report.

The one serving study CI runs: the study file as written, with the test's tiny model and
output folder, and its batch-limit axis held at 4 (2 runs of 24 requests each, one per request
rate, instead of 4: most of a run's time is vLLM's server starting, and the rate axis is what
the report's sweep figure draws).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.results.io import read_model
from harness.results.schema import ExperimentResult, Manifest

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "studies" / "serving-cpu.yaml"


@pytest.mark.docker
def test_the_serving_cpu_study_runs_in_containers(tmp_path, docker_client, vllm_cpu_image,
                                                  tiny_model):
    study = yaml.safe_load(STUDY.read_text())
    study["experiment"]["model"] = str(tiny_model)
    study["output_dir"] = str(tmp_path / "results")
    study["execution"]["runner"] = "docker"
    study["sweep"]["vllm.max_num_seqs"] = [4]
    path = tmp_path / "serving-cpu.yaml"
    path.write_text(yaml.safe_dump(study))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "study", "run", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=1500,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (study_dir,) = list((tmp_path / "results").iterdir())
    manifest = read_model(study_dir / "manifest.json", Manifest)
    assert manifest.state == "complete" and len(manifest.runs) == 2
    rates = set()
    for rec in manifest.runs:
        assert rec.status == "done", (rec.run_id, rec.reason, rec.message)
        run_dir = study_dir / "runs" / rec.run_id
        result = read_model(run_dir / "result.json", ExperimentResult)
        s = result.serving
        assert s is not None and s.requests_ok == 24 and s.requests_failed == 0
        assert s.window_found and s.max_running_requests == result.experiment.vllm.max_num_seqs
        assert s.achieved_request_rate == pytest.approx(result.experiment.serving.request_rate,
                                                        rel=0.02)
        assert result.backend_info["engine"] == "vllm" and \
            result.backend_info["engine_version"] == "0.32.0"
        assert result.latency.ttft.n == 24 and result.latency.tpot.p90_s is not None
        e = result.energy  # unavailable, or RAPL where the host lets containers read it
        assert e.energy_method in ("unavailable", "rapl"), (rec.run_id, e.energy_method)
        if e.energy_method == "rapl":
            assert e.energy_j is not None and e.energy_j > 0, (rec.run_id, e.energy_j)
            assert e.j_per_output_token is not None and e.j_per_output_token > 0
            assert e.j_per_request is not None and e.j_per_request > 0
        else:
            assert e.energy_j is None and e.j_per_request is None, e.unavailable_reason
        assert s.slo_attainment is not None and s.mean_running_requests is not None
        lines = [json.loads(x) for x in (run_dir / "requests.jsonl").read_text().splitlines()]
        assert len(lines) == 24 and all(x["status"] == "ok" and x["output_tokens"] == 16
                                        for x in lines)
        log = (run_dir / "server.log").read_text()
        assert "vllm.entrypoints.openai.api_server" in log and "[agent] server stopped" in log
        rates.add(result.experiment.serving.request_rate)
    assert rates == {4.0, 8.0}
    report = (study_dir / "report" / "report.md").read_text()
    assert "## Serving" in report and "figures/serving_serving_request_rate.png" in report
    assert len(list((study_dir / "report" / "figures" / "serving").glob("*.png"))) == 2
    left = docker_client.containers.list(
        all=True, filters={"label": f"org.harness.study_dir={study_dir.resolve()}"})
    assert left == []  # every run's container (and the server inside it) is gone
