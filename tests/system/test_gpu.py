"""GPU metrics through NVML.

The development machines have no NVIDIA GPU, so the NVML code path is covered
with a fake ``pynvml`` module injected into ``sys.modules``: this is the only
fake in the suite, standing in for hardware that does not exist here. The
last test talks to the real NVML and runs wherever a GPU and driver exist.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from tracelet.run import Run
from tracelet.testing import RecordingBackend

GIB = 1 << 30


class FakeNvml(types.ModuleType):
    """FAKE pynvml (no GPU here): two devices; device 1 does not support power readings."""

    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.calls: list[str] = []
        self.power_queries = {0: 0, 1: 0}

    def nvmlInit(self) -> None:
        self.calls.append("init")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlDeviceGetName(self, handle: int) -> str:
        return ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"][handle]

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return types.SimpleNamespace(gpu=[87, 3][handle], memory=[40, 0][handle])

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        total = [80 * GIB, 40 * GIB][handle]
        return types.SimpleNamespace(total=total, used=total // 4, free=total - total // 4)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return [71, 35][handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        self.power_queries[handle] += 1
        if handle == 1:
            raise self.NVMLError_NotSupported("Not Supported")
        return 312_500  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:
        return [700_000, 400_000][handle]


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    module = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


def test_gpu_metrics_and_environment_through_nvml(
    fake_nvml: FakeNvml,
    start_system: Callable[..., Run],
    wait_for_samples: Callable[..., RecordingBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tracelet")
    run = start_system()
    backend = wait_for_samples(run, 3)
    run.stop()
    samples = len(backend.metric_values("system/memory/percent"))
    expected = {
        "system/gpu/0/utilization": 87.0,
        "system/gpu/0/memory_used_bytes": 20.0 * GIB,
        "system/gpu/0/memory_total_bytes": 80.0 * GIB,
        "system/gpu/0/memory_percent": 25.0,
        "system/gpu/0/temperature_c": 71.0,
        "system/gpu/0/power_w": 312.5,
        "system/gpu/0/power_limit_w": 700.0,
        "system/gpu/1/utilization": 3.0,
        "system/gpu/1/memory_used_bytes": 10.0 * GIB,
        "system/gpu/1/memory_total_bytes": 40.0 * GIB,
        "system/gpu/1/memory_percent": 25.0,
        "system/gpu/1/temperature_c": 35.0,
        "system/gpu/1/power_limit_w": 400.0,
    }
    gpu_metrics = {m.name for m in backend.metrics if m.name.startswith("system/gpu/")}
    assert gpu_metrics == set(expected)  # no system/gpu/1/power_w: not supported by device 1
    for name, value in expected.items():
        assert backend.metric_values(name) == [(step, value) for step in range(samples)], name
    tags = backend.tags
    assert tags["env.gpu_count"] == "2"
    assert tags["env.gpu.0.name"] == "NVIDIA H100 80GB HBM3"
    assert tags["env.gpu.1.name"] == "NVIDIA A100-SXM4-40GB"
    assert tags["env.gpu.0.memory_total_bytes"] == str(80 * GIB)
    assert tags["env.gpu_driver"] == "550.54.15"
    # The unsupported query was asked once and logged once, not at every sample.
    assert fake_nvml.power_queries == {0: samples, 1: 1}
    unsupported = [r for r in caplog.records if "GPU query failed" in r.getMessage()]
    assert len(unsupported) == 1
    assert "gpu=1" in unsupported[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert fake_nvml.calls == ["init", "shutdown"]


def test_gpu_setting_off_does_not_touch_nvml(
    fake_nvml: FakeNvml, start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend]
) -> None:
    run = start_system(gpu=False)
    backend = wait_for_samples(run, 2)
    run.stop()
    assert fake_nvml.calls == []
    assert not [m for m in backend.metrics if m.name.startswith("system/gpu/")]


def test_without_pynvml_gpu_metrics_are_absent(
    monkeypatch: pytest.MonkeyPatch,
    start_system: Callable[..., Run],
    wait_for_samples: Callable[..., RecordingBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what `import pynvml` sees when it is not installed
    caplog.set_level(logging.DEBUG, logger="tracelet")
    run = start_system()
    backend = wait_for_samples(run, 2)
    run.stop()
    assert not [m for m in backend.metrics if m.name.startswith("system/gpu/")]
    assert [r.getMessage().split(" error=")[0] for r in caplog.records if "GPU" in r.getMessage()] == [
        "no GPU metrics: pynvml is not importable"
    ]
    assert run.stats()["recording"].failed == 0


def test_real_gpu(start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend]) -> None:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        pytest.skip(f"needs an NVIDIA GPU and driver: nvmlInit raised {type(error).__name__} ({error})")
    try:
        count = pynvml.nvmlDeviceGetCount()
        totals = [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).total for i in range(count)]
    finally:
        pynvml.nvmlShutdown()
    run = start_system()
    backend = wait_for_samples(run, 3)
    run.stop()
    assert backend.tags["env.gpu_count"] == str(count)
    assert backend.tags["env.gpu_driver"]
    for index, total in enumerate(totals):
        prefix = f"system/gpu/{index}/"
        assert all(0 <= v <= 100 for _, v in backend.metric_values(prefix + "utilization"))
        assert all(v == total for _, v in backend.metric_values(prefix + "memory_total_bytes"))
        assert all(0 <= v <= total for _, v in backend.metric_values(prefix + "memory_used_bytes"))
        assert all(0 < v < 120 for _, v in backend.metric_values(prefix + "temperature_c"))
        assert len(backend.metric_values(prefix + "utilization")) >= 3
