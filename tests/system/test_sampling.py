"""Real resource sampling on this machine, end to end through a run and the recording backend."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable

import psutil
import pytest

from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_system.counters import ProcfsReader, PsutilReader
from tracelet_system.resources import ResourceSampler

LEVELS = {
    "system/memory/used_bytes",
    "system/memory/available_bytes",
    "system/memory/percent",
    "system/swap/used_bytes",
    "system/swap/percent",
    "system/disk/used_bytes",
    "system/disk/free_bytes",
    "system/disk/percent",
    "system/process/rss_bytes",
    "system/process/threads",
    "system/load/1m",
    "system/load/5m",
    "system/load/15m",
}
CHANGES = {
    "system/cpu/percent",
    "system/process/cpu_percent",
    "system/disk/read_bytes_per_s",
    "system/disk/write_bytes_per_s",
    "system/network/recv_bytes_per_s",
    "system/network/sent_bytes_per_s",
}


def _nvml_works() -> bool:
    import pynvml

    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def test_samples_have_the_documented_names_steps_and_ranges(
    start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend]
) -> None:
    run = start_system(per_core=True)
    backend = wait_for_samples(run, 4)
    run.stop()
    metrics = [m for m in backend.metrics if m.name.startswith("system/")]
    by_step: dict[int, set[str]] = {}
    for metric in metrics:
        by_step.setdefault(metric.step, set()).add(metric.name)
    steps = sorted(by_step)
    assert steps == list(range(len(steps)))
    assert len(steps) >= 4
    cores = {f"system/cpu/{i}/percent" for i in range(psutil.cpu_count())}
    # The sample taken at start has levels only; percentages and rates need a previous sample.
    assert by_step[0] == LEVELS
    for step in steps[1:]:
        assert by_step[step] == LEVELS | CHANGES | cores, step
    # One timestamp per sample, increasing about one interval apart.
    stamps = [{m.timestamp for m in metrics if m.step == step} for step in steps]
    assert all(len(s) == 1 for s in stamps)
    times = [min(s) for s in stamps]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(0.15 < gap < 5 for gap in gaps), gaps

    def values(name: str) -> list[float]:
        return [value for _, value in backend.metric_values(name)]

    for name in {"system/memory/percent", "system/swap/percent", "system/disk/percent", "system/cpu/percent"} | cores:
        assert all(0.0 <= v <= 100.0 for v in values(name)), name
    for name in CHANGES | {"system/load/1m", "system/load/5m", "system/load/15m"}:
        assert all(v >= 0.0 for v in values(name)), name
    total = psutil.virtual_memory().total
    for used, available in zip(values("system/memory/used_bytes"), values("system/memory/available_bytes"), strict=True):
        assert used + available == total
    assert float(backend.tags["env.memory_total_bytes"]) == total
    disk = psutil.disk_usage(os.getcwd())
    assert values("system/disk/used_bytes")[-1] + values("system/disk/free_bytes")[-1] <= disk.total
    assert abs(values("system/disk/free_bytes")[-1] - disk.free) < 0.05 * disk.total
    rss = psutil.Process().memory_info().rss
    assert 0.5 * rss < values("system/process/rss_bytes")[-1] < 2 * rss
    # The main thread, the collector's and at least the dispatcher's and the backend worker's.
    assert min(values("system/process/threads")) >= 3


def test_process_cpu_percent_sees_a_busy_loop(
    start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend]
) -> None:
    run = start_system()
    wait_for_samples(run, 2)
    end = time.process_time() + 0.8
    while time.process_time() < end:
        pass
    backend = wait_for_samples(run, len(run.get_plugin("recording").metric_values("system/memory/percent")) + 2)  # type: ignore[attr-defined]
    run.stop()
    busiest = max(value for _, value in backend.metric_values("system/process/cpu_percent"))
    assert busiest > 40.0, backend.metric_values("system/process/cpu_percent")


def test_without_gpu_there_are_no_gpu_metrics_and_one_debug_line(
    start_system: Callable[..., Run], wait_for_samples: Callable[..., RecordingBackend], caplog: pytest.LogCaptureFixture
) -> None:
    if _nvml_works():
        pytest.skip("an NVIDIA GPU is usable here; the no-GPU path is exercised on machines without one")
    caplog.set_level(logging.DEBUG, logger="tracelet")
    run = start_system()
    backend = wait_for_samples(run, 3)
    run.stop()
    assert not [m for m in backend.metrics if m.name.startswith("system/gpu/")]
    assert backend.tags["env.gpu_count"] == "0"
    assert "env.gpu_driver" not in backend.tags
    gpu_lines = [r.getMessage() for r in caplog.records if "GPU" in r.getMessage()]
    assert len(gpu_lines) == 1, gpu_lines
    assert gpu_lines[0].startswith("no GPU metrics: NVML is not available")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert run.stats()["recording"].failed == 0


def test_disabled_by_configuration_or_environment(tracelet_start: Callable[..., Run], monkeypatch: pytest.MonkeyPatch) -> None:
    run = tracelet_start(backends=["recording"], config={"system": {"enabled": False}})
    run.stop()
    assert "system" not in run.info.plugins
    assert not [r for r in run.get_plugin("recording").records if getattr(r, "name", "").startswith(("system/", "env"))]  # type: ignore[attr-defined]

    monkeypatch.setenv("TRACELET_SYSTEM_ENABLED", "false")
    run = tracelet_start(backends=["recording"])
    run.stop()
    assert "system" not in run.info.plugins


def test_procfs_and_psutil_readers_agree() -> None:
    procfs = ProcfsReader(per_core=True)
    psutil_reader = PsutilReader(psutil, per_core=True)
    try:
        # A thread left by an earlier test may end between the two readings; a pair
        # bracketed by two procfs readings with the same thread count saw the same threads.
        for _ in range(50):
            mine, theirs = procfs.read(), psutil_reader.read()
            if procfs.read().process_threads == mine.process_threads:
                break
            time.sleep(0.02)
    finally:
        procfs.close()
    assert mine.memory_total == theirs.memory_total
    assert mine.swap_total == theirs.swap_total
    assert mine.process_threads == theirs.process_threads
    assert len(mine.cores) == len(theirs.cores) == psutil.cpu_count()
    assert abs(mine.memory_available - theirs.memory_available) < 0.02 * mine.memory_total
    assert abs(mine.process_rss - theirs.process_rss) < 0.2 * theirs.process_rss
    assert abs(mine.process_cpu - theirs.process_cpu) < 0.5
    # Cumulative counters read a moment apart: psutil's reading comes second.
    for name in ("disk_read", "disk_written", "net_received", "net_sent"):
        first, second = getattr(mine, name), getattr(theirs, name)
        assert first is not None
        assert second is not None
        assert 0 <= second - first < 50_000_000, name


def test_sampler_gives_the_same_names_with_the_psutil_reader(tmp_path: object) -> None:
    names = []
    for reader in (PsutilReader(psutil, per_core=True), ProcfsReader(per_core=True)):
        sampler = ResourceSampler(psutil, per_core=True, disk_path=os.getcwd(), reader=reader)
        first = sampler.sample()
        time.sleep(0.05)
        names.append(({name for name, _ in first}, {name for name, _ in sampler.sample()}))
        sampler.close()
    assert names[0] == names[1]


def test_procfs_reader_reads_whole_files_larger_than_its_buffer() -> None:
    reader = ProcfsReader(per_core=True)
    try:
        reader._read_sizes["/proc/meminfo"] = 16  # far smaller than the file: it must grow, not cut
        data = reader._pread("/proc/meminfo")
        assert reader._read_sizes["/proc/meminfo"] > len(data)
    finally:
        reader.close()
    with open("/proc/meminfo", "rb") as meminfo:
        expected = [line.split(b":")[0] for line in meminfo.read().splitlines()]
    assert [line.split(b":")[0] for line in data.splitlines()] == expected
