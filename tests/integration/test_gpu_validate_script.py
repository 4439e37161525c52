"""The GPU validation script (scripts/gpu_validate.py) runs end to end as a dry run on
simulated GPUs, so it does not rot between the rare sessions that have a GPU to run it on."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_dry_run_compares_every_run_with_the_simulators_energy(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gpu_validate.py"), "--out", str(tmp_path),
         "--simulated", "--small", "--cycles", "1"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((tmp_path / "validate.json").read_text())
    assert {r["batch"] for r in data["rows"]} == {1, 32}
    for row in data["rows"]:
        assert row["method"] == "simulated"
        assert abs(row["energy_counter_j"] - row["energy_logged_j"]) <= row["energy_u95_j"]
        assert row["loaded_idle_w"] is not None and row["preload_idle_w"] is not None
    assert "counter energy within its U95 of the independent energy: 2/2" in proc.stdout


def test_the_logged_energy_integrates_the_log_over_the_window(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    from gpu_validate import logged_energy

    log = tmp_path / "log.csv"
    rows = ["t_s,power_mw,energy_mj"]
    for i in range(101):  # 10 ms apart: 100 W for the first half second, 300 W after
        t = 10.0 + i * 0.01
        rows.append(f"{t:.2f},{100_000 if t < 10.5 else 300_000},{i * 1000}")
    log.write_text("\n".join(rows) + "\n")
    trapezoid, counter = logged_energy(log, 10.0, 11.0)
    assert trapezoid == pytest.approx(0.5 * 100 + 0.5 * 300, abs=2.0)
    assert counter == pytest.approx(100.0)
    assert logged_energy(log, 20.0, 21.0) == (None, None)
