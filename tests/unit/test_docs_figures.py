"""Figures quoted in the docs say where they come from, and agree with what produces them."""

import re
from pathlib import Path

import pytest

from harness.testing.simgpu.config import SimulatedGpus

REPO = Path(__file__).resolve().parents[2]


def section(path: Path, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level."""
    text = path.read_text(encoding="utf-8")
    assert f"\n{heading}\n" in text, f"{path.name}: no heading {heading!r}"
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n#{1,6} ", body, maxsplit=1)[0]


def paragraphs(path: Path) -> list[str]:
    """Blank-line separated blocks, list items apart, joined into single lines."""
    blocks = re.split(r"\n\s*\n|\n(?=- )", path.read_text(encoding="utf-8"))
    return [" ".join(b.split()) for b in blocks]


def test_image_sizes_table_has_no_blank_cell() -> None:
    rows = [line for line in section(REPO / "docs" / "images.md", "## Sizes and build times")
            .splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) >= 7
    for row in rows[1:]:  # the header's first cell is blank on purpose
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        assert all(cells), f"docs/images.md: a blank cell (say 'not measured') in: {row}"


def test_image_timings_say_they_were_not_remeasured() -> None:
    text = " ".join(section(REPO / "docs" / "images.md", "## Sizes and build times").split())
    assert "None of these figures was re-measured at HEAD or from a clean clone" in text
    assert "the sum of two separate runs, 84 s to fill the wheelhouse + 510 s" in text


@pytest.mark.parametrize("doc", ["README.md", "docs/gpu-control.md"])
def test_power_limit_sim_duration_comes_with_the_command_that_measures_it(doc) -> None:
    quoted = [p for p in paragraphs(REPO / doc)
              if "power-limit-sim.yaml" in p and re.search(r"about \d+ s\b", p)]
    assert quoted, f"{doc}: no duration of studies/power-limit-sim.yaml found"
    for p in quoted:
        assert "time harness study run studies/power-limit-sim.yaml" in p, f"{doc}: {p}"


def model_curve(limit_w: float, exponent: float = 3.0) -> tuple[float, float]:
    """Time and energy of 0.1 s prefill + 0.4 s decode under a cap, from the simulator's model."""
    power = SimulatedGpus().power_w
    seconds = joules = 0.0
    for demand_w, busy_s in ((power.prefill, 0.1), (power.decode, 0.4)):
        if demand_w > limit_w:  # held at the limit, the clock at (limit/demand)^(1/exponent)
            busy_s *= (demand_w / limit_w) ** (1 / exponent)
        seconds += busy_s
        joules += min(demand_w, limit_w) * busy_s
    return seconds, joules


def test_recorded_power_curve_is_the_simulators_model() -> None:
    text = section(REPO / "docs" / "gpu-control.md", "### The simulator's own curve (a model, not hardware)")
    assert "python benchmarks/simgpu_power_curve.py" in text and "Nothing here ran on a GPU" in text
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", text, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [200, 250, 300, 450, 700]
    for limit, seconds, joules, _, _ in rows:
        want_s, want_j = model_curve(float(limit))
        # sleeps overshoot on a loaded machine: a few percent over the model, never under it
        assert want_s * 0.999 <= float(seconds) <= want_s * 1.05, (limit, seconds, want_s)
        assert want_j * 0.999 <= float(joules) <= want_j * 1.05, (limit, joules, want_j)
