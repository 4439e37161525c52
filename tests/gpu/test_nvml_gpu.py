"""The NVML sensor on a real NVIDIA GPU (marker gpu; run on a GPU machine: pytest -m gpu).

Checks what the patched unit tests cannot: that the real driver's energy counter advances,
that its energy agrees with integrated power, that load draws more than idle, and that the
UUID torch reports for a device is the one NVML matches.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from harness.agent.sensors.null import UnavailableSensor
from harness.agent.sensors.nvml import NvmlSensor, open_nvml_sensor

pytestmark = pytest.mark.gpu

INTERVAL_MS = 100


@pytest.fixture(scope="module")
def sensor() -> Any:
    if not os.path.exists("/dev/nvidiactl"):
        pytest.skip("no NVIDIA driver on this machine (/dev/nvidiactl is absent)")
    s = open_nvml_sensor([], visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert isinstance(s, NvmlSensor), f"NVML is unavailable on a GPU machine: {s.reason}"
    yield s
    s.close()


def busy(seconds: float) -> None:
    """Keep GPU 0 busy with bf16 matrix products for ``seconds``."""
    torch = pytest.importorskip("torch")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(20):
            a = (a @ b).clamp_(-1, 1)
        torch.cuda.synchronize()


def test_provenance_describes_the_gpus(sensor: NvmlSensor) -> None:
    info = sensor.provenance()
    print(info)
    assert info["driver_version"] and info["cuda_driver_version"]
    for dev in info["devices"]:
        assert dev["name"] and dev["uuid"].startswith("GPU-")
        assert dev["power_limit_w"] and dev["power_limit_w"] > 0
        assert dev["persistence_mode"] in (True, False)
        assert dev["memory_total_bytes"] > 0


def test_idle_window_counter_advances(sensor: NvmlSensor) -> None:
    sensor.begin(INTERVAL_MS)
    time.sleep(2.0)
    reading = sensor.end()
    print(reading.method, reading.energy_j, reading.notes)
    assert reading.method in ("nvml_counter", "nvml_power_integration")
    limit = {d["device"]: d["power_limit_w"] for d in sensor.provenance()["devices"]}
    for dev, energy in reading.energy_j.items():
        assert energy is not None and energy > 0
        assert 5 < energy / reading.duration_s < 1.1 * limit[dev]
        assert len(reading.device_samples(dev)) >= 15
    assert reading.sampler_cpu_s is not None and reading.sampler_cpu_s < 0.2


def test_load_draws_more_than_idle_and_counter_matches_integration(sensor: NvmlSensor) -> None:
    sensor.begin(INTERVAL_MS)
    time.sleep(3.0)
    idle = sensor.end()
    sensor.begin(INTERVAL_MS)
    busy(8.0)
    load = sensor.end()
    dev = "gpu0"
    idle_w = idle.energy_j[dev] / idle.duration_s
    load_w = load.energy_j[dev] / load.duration_s
    rows = [s for s in load.device_samples(dev) if s["power_w"] is not None]
    integrated = sum(
        (b["t_s"] - a["t_s"]) * (a["power_w"] + b["power_w"]) / 2
        for a, b in zip(rows, rows[1:], strict=False)
    )
    print(f"idle {idle_w:.1f} W, load {load_w:.1f} W, counter {load.energy_j[dev]:.1f} J, "
          f"integrated {integrated:.1f} J, {len(rows)} samples, notes {load.notes}")
    assert load_w > idle_w * 1.2
    if load.methods.get(dev) == "nvml_counter":
        # power readings are 1 s averages on recent GPUs: agreement is loose, not exact
        assert integrated == pytest.approx(load.energy_j[dev], rel=0.3)
    temps = [s["temperature_c"] for s in rows if s["temperature_c"] is not None]
    assert temps and max(temps) < 110


def test_torch_device_uuid_matches_nvml(sensor: NvmlSensor) -> None:
    torch = pytest.importorskip("torch")
    props = torch.cuda.get_device_properties(0)
    uuid = f"GPU-{props.uuid}"
    matched = open_nvml_sensor([uuid])
    try:
        assert not isinstance(matched, UnavailableSensor), matched.reason
        dev = matched.provenance()["devices"][0]
        assert dev["uuid"] == uuid
        assert dev["name"] == props.name
    finally:
        matched.close()
