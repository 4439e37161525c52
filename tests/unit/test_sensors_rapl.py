"""RAPL sensor against a powercap tree written in a temporary folder (the layout of
/sys/class/powercap: flat intel-rapl:N[:M] zone folders with name, energy_uj and
max_energy_range_uj)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.agent.sensors import select_sensor
from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.rapl import RaplSensor, Zone, find_zones, open_rapl_sensor

RANGE_UJ = 10_000_000  # a small range so the tests wrap around quickly
SETTLE_S = 0.12  # longer than a few sampler intervals (20 ms)


def write(path: Path, value: object) -> None:
    """Replace a file atomically, as sysfs shows a value (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value}\n")
    os.replace(tmp, path)


def zone(root: Path, folder: str, name: str, energy_uj: int, max_uj: int | None = RANGE_UJ) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    write(path / "name", name)
    write(path / "energy_uj", energy_uj)
    if max_uj is not None:
        write(path / "max_energy_range_uj", max_uj)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    root.mkdir()
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)  # inside the package: not added
    zone(root, "intel-rapl:0:1", "dram", 2_000_000)
    zone(root, "intel-rapl:1", "package-1", 3_000_000)
    zone(root, "intel-rapl:2", "psys", 9_000_000)  # whole platform: overlaps, not added
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)  # MMIO duplicate: not added
    (root / "intel-rapl").mkdir()  # the control type folder
    write(root / "intel-rapl" / "enabled", 1)
    return root


def test_finds_package_and_dram_zones_only(tree: Path) -> None:
    zones = find_zones(tree)
    assert [z.key for z in zones] == ["package-0", "dram-0", "package-1"]
    assert all(z.max_range_uj == RANGE_UJ for z in zones)


def test_energy_is_the_counter_difference_per_domain(tree: Path) -> None:
    sensor = open_rapl_sensor(tree)
    assert isinstance(sensor, RaplSensor)
    assert sensor.method == "rapl" and sensor.available
    sensor.begin(20)
    write(tree / "intel-rapl:0" / "energy_uj", 1_000_000 + 2_500_000)
    write(tree / "intel-rapl:0:1" / "energy_uj", 2_000_000 + 400_000)
    write(tree / "intel-rapl:1" / "energy_uj", 3_000_000 + 1_000_000)
    time.sleep(SETTLE_S)
    reading = sensor.end()
    assert reading.method == "rapl"
    assert reading.energy_j == {
        "package-0": pytest.approx(2.5), "dram-0": pytest.approx(0.4),
        "package-1": pytest.approx(1.0),
    }
    assert reading.total_energy_j == pytest.approx(3.9)
    assert reading.methods == dict.fromkeys(reading.energy_j, "rapl")
    last = reading.device_samples("package-0")[-1]
    assert last["energy_j"] == pytest.approx(2.5)
    assert len(reading.device_samples("package-0")) >= 3
    sensor.close()


def test_wrap_around_uses_max_energy_range(tree: Path) -> None:
    write(tree / "intel-rapl:0" / "energy_uj", RANGE_UJ - 1_000_000)
    sensor = open_rapl_sensor(tree)
    sensor.begin(20)
    write(tree / "intel-rapl:0" / "energy_uj", 500_000)  # wrapped past max_energy_range_uj
    time.sleep(SETTLE_S)
    reading = sensor.end()
    assert reading.energy_j["package-0"] == pytest.approx(1.5)
    assert reading.counter_resets == []


def test_sampling_counts_several_wraps_in_one_window(tree: Path) -> None:
    write(tree / "intel-rapl:0" / "energy_uj", RANGE_UJ - 1_000_000)
    sensor = open_rapl_sensor(tree)
    sensor.begin(20)
    expected_uj = 0
    for value, step in [
        (500_000, 1_500_000),  # wrap
        (RANGE_UJ - 2_000_000, RANGE_UJ - 2_500_000),  # a long stretch forward
        (1_000_000, 3_000_000),  # wrap again
    ]:
        write(tree / "intel-rapl:0" / "energy_uj", value)
        expected_uj += step
        time.sleep(SETTLE_S)
    reading = sensor.end()
    # more than one full counter range: only possible by adding sampled differences
    assert expected_uj > RANGE_UJ
    assert reading.energy_j["package-0"] == pytest.approx(expected_uj / 1e6)


def test_wrap_without_a_known_range_is_unknown(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 5_000_000, max_uj=None)
    sensor = open_rapl_sensor(root)
    sensor.begin(20)
    write(root / "intel-rapl:0" / "energy_uj", 1_000)
    time.sleep(SETTLE_S)
    reading = sensor.end()
    assert reading.energy_j == {"package-0": None}
    assert reading.method == "unavailable"


def test_power_samples_are_energy_over_time(tree: Path) -> None:
    sensor = open_rapl_sensor(tree)
    sensor.begin(20)
    time.sleep(0.05)
    write(tree / "intel-rapl:0" / "energy_uj", 1_000_000 + 1_000_000)
    time.sleep(SETTLE_S)
    reading = sensor.end()
    rows = reading.device_samples("package-0")
    assert any(r["power_w"] for r in rows)  # the step shows up as an interval with power > 0
    # each power value covers the time since the previous one (the window opens at t = 0)
    energy_j, since = 0.0, 0.0
    for row in rows:
        if row["power_w"] is not None:
            energy_j += (row["t_s"] - since) * row["power_w"]
            since = row["t_s"]
    assert energy_j == pytest.approx(1.0, rel=0.01)
    assert all(r["power_w"] is None or r["power_w"] >= 0 for r in rows)


def test_counter_that_does_not_advance_is_unknown_not_zero(tree: Path) -> None:
    sensor = open_rapl_sensor(tree)
    sensor.begin(20)
    time.sleep(0.05)
    reading = sensor.end()
    assert reading.energy_j["package-0"] is None
    assert set(reading.counter_stalled) == {"package-0", "dram-0", "package-1"}
    assert reading.total_energy_j is None
    assert reading.method == "unavailable"


def test_no_powercap_tree_is_unavailable(tmp_path: Path) -> None:
    sensor = open_rapl_sensor(tmp_path / "absent")
    assert isinstance(sensor, UnavailableSensor)
    assert "no powercap" in (sensor.reason or "")


def test_no_rapl_zones_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "psys", 1)
    sensor = open_rapl_sensor(root)
    assert isinstance(sensor, UnavailableSensor)
    assert "no RAPL package or dram zones" in (sensor.reason or "")


def test_permission_denied_is_unavailable(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs as root, which reads mode-0400 files anyway; this is what the kernel answers a
    # non-root reader of energy_uj since Linux 5.10
    def denied(self: Zone) -> int:
        raise PermissionError(13, "Permission denied", str(self.path / "energy_uj"))

    monkeypatch.setattr(Zone, "read_uj", denied)
    sensor = open_rapl_sensor(tree)
    assert isinstance(sensor, UnavailableSensor)
    assert "permission denied" in (sensor.reason or "")


def test_select_sensor_for_cpu_reads_rapl(tree: Path, tmp_path: Path) -> None:
    assert isinstance(select_sensor("cpu", [], powercap_root=tree), RaplSensor)
    blind = select_sensor("cpu", [], powercap_root=tmp_path / "absent")
    assert isinstance(blind, UnavailableSensor)


def test_provenance_lists_zones(tree: Path) -> None:
    info = open_rapl_sensor(tree).provenance()
    assert info["sensor"] == "rapl"
    assert [z["device"] for z in info["zones"]] == ["package-0", "dram-0", "package-1"]
