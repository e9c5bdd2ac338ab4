"""Reliability benchmarks: memory with a stalled backend, spool write speed, caller cost while spilling.

Run from the core tox env, which has the fixture plugins installed
(tests/core/plugins/tracelet-fixtures: ``fixture-hanging`` is a backend whose
hooks block forever, ``fixture-good`` a healthy in-memory one)::

    tox -e core --notest && .tox/core/bin/python benchmarks/reliability.py [--metrics 5000000]

Each figure is a ratio to a baseline measured in the same run. Prints a
table; docs/reliability.md quotes it with the method.

1. Memory: a run whose only backend hangs on its first batch; the main
   thread logs N metrics (default 5 million) flat out. Peak RSS growth
   (``ru_maxrss`` at the end minus RSS before the loop) must stay within
   64 MB, and every metric must be accounted for: delivered + spooled (on
   disk after ``stop()``, counted by reading every frame back) + dropped
   (intake overflow: the loop outran the router) = N.
2. Spool writes: records appended to a :class:`~tracelet.spool.BackendSpool`
   the way the router does (segments of 1000 records, periodic fsync), vs
   plain buffered ``file.write`` of the same bytes in the same chunks.
   Shown for the append alone (frames already encoded, as the router shares
   one encoding among every spilling backend) and with encoding included.
3. Caller cost: the calling thread's CPU time (``time.thread_time``) per
   ``log_metric`` with two healthy backends vs one healthy and one hung
   (spilling to its spool); wall time too, which includes the GIL time the
   router takes to encode what it spools.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import tracelet
from tracelet.dispatcher import _SEGMENT_SIZE
from tracelet.info import RunInfo
from tracelet.records import Metric
from tracelet.spool import _SEGMENT_BYTES, MAGIC, BackendSpool, encode_records, iter_frames
from tracelet_fixtures import hanging

MB = 1024 * 1024


def _rss() -> int:
    """Current resident set size, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def _count_frames(directory: Path) -> int:
    count = 0
    for segment in directory.rglob("*.seg"):
        with segment.open("rb") as file:
            assert file.read(len(MAGIC)) == MAGIC
            count += sum(1 for _ in iter_frames(file, len(MAGIC), segment.stat().st_size))
    return count


def bench_memory(metrics: int, spool_dir: Path) -> list[tuple[str, str, str]]:
    hanging.rearm()
    run = tracelet.start(backends=["fixture-hanging"], spool_dir=str(spool_dir), handle_signals=False)
    log_metric = run.log_metric
    log_metric("loss", 0.0, 0)
    assert run.get_plugin("fixture-hanging").entered.wait(10)  # type: ignore[attr-defined]
    before = _rss()
    started = time.perf_counter()
    for step in range(1, metrics):
        log_metric("loss", 0.5, step)
    logged = time.perf_counter() - started
    stopped = run.stop(timeout=5)
    total = time.perf_counter() - started
    growth = _peak_rss() - before
    stats = run.stats()["fixture-hanging"]
    on_disk = _count_frames(spool_dir / run.id / "fixture-hanging")
    hanging.release()
    accounted = stats.delivered + on_disk + stats.dropped
    assert not stopped, "the hung backend cannot have ended"
    assert stats.spooled == on_disk, (stats, on_disk)
    assert accounted == metrics, (stats, on_disk, metrics)
    return [
        ("1. memory, backend stalled", f"{metrics:,} metrics logged flat out", f"{logged:.1f} s loop, {total:.1f} s to stop()"),
        ("", "peak RSS growth (goal <= 64 MB)", f"{growth / MB:.1f} MB"),
        ("", "spooled (frames read back from disk)", f"{on_disk:,}"),
        ("", "dropped (intake overflow) / delivered", f"{stats.dropped:,} / {stats.delivered:,}"),
        ("", "lost: logged - spooled - dropped - delivered", f"{metrics - accounted}"),
    ]


def _spool_chunks(records: int) -> list[tuple[bytes, int]]:
    chunk = [Metric("train/loss", 0.5, step, 1.7e9 + step) for step in range(_SEGMENT_SIZE)]
    frames = encode_records(chunk)[0]
    return [(frames, _SEGMENT_SIZE)] * (records // _SEGMENT_SIZE)


def _ratio(base: float, measured: float, records: int) -> str:
    return f"{base / measured:.2f}x ({records / measured / 1e6:.2f} M records/s)"


def bench_spool(records: int, directory: Path, repeats: int = 5) -> list[tuple[str, str, str]]:
    chunks = _spool_chunks(records)
    metrics = [Metric("train/loss", 0.5, step, 1.7e9 + step) for step in range(_SEGMENT_SIZE)]
    size = sum(len(frames) for frames, _ in chunks)
    info = RunInfo(id="bench", project="bench", name="bench", start_time=0.0, tracelet_version="0", backends=("b",), plugins=())

    def plain(fsync_every: int) -> None:
        with open(directory / "plain.bin", "wb") as file:  # default buffering
            written = 0
            for frames, _ in chunks:
                file.write(frames)
                written += len(frames)
                if fsync_every and written >= fsync_every:  # the spool's durability: each full segment synced
                    file.flush()
                    os.fsync(file.fileno())
                    written = 0
            if fsync_every:
                file.flush()
                os.fsync(file.fileno())
        os.unlink(directory / "plain.bin")

    def spooled(encode: bool, fsync_interval: float) -> None:
        spool = BackendSpool(directory / "spool", info, "b", fsync_interval=fsync_interval)
        for frames, count in chunks:
            if encode:
                frames = encode_records(metrics)[0]
            spool.append(frames, count)
            spool.maybe_sync()  # what the router's tick does
        spool.close(None)
        for path in (directory / "spool").glob("*"):
            path.unlink()

    def best(function: object, *arguments: object) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            function(*arguments)  # type: ignore[operator]
            times.append(time.perf_counter() - started)
        return min(times)

    base = best(plain, 0)
    base_synced = best(plain, _SEGMENT_BYTES)
    unsynced = best(spooled, False, -1.0)  # fsync off: the spool's own framing and bookkeeping
    append = best(spooled, False, 1.0)
    encoded = best(spooled, True, 1.0)
    return [
        ("2. spool writes", f"baseline: buffered file.write, no fsync, {size / MB:.0f} MB", f"{size / MB / base:,.0f} MB/s"),
        ("", "BackendSpool.append, fsync off", _ratio(base, unsynced, records)),
        ("", "BackendSpool.append, default fsync (goal >= 0.5x)", _ratio(base, append, records)),
        ("", "  same, vs file.write + fsync per 16 MiB", f"{base_synced / append:.2f}x"),
        ("", "encode + append (one backend spilling alone)", _ratio(base, encoded, records)),
    ]


def _caller_cost(backends: list[str], calls: int, spool_dir: Path) -> tuple[float, float, int, int, int]:
    hanging.rearm()
    run = tracelet.start(backends=backends, spool_dir=str(spool_dir), handle_signals=False)
    log_metric = run.log_metric
    if "fixture-hanging" in backends:
        log_metric("warmup", 0.0, 0)
        assert run.get_plugin("fixture-hanging").entered.wait(10)  # type: ignore[attr-defined]
    cpu = wall = float("inf")
    for _ in range(5):
        time.sleep(1.0)  # let the router catch up: each repeat starts with an empty intake
        started_cpu, started_wall = time.thread_time(), time.perf_counter()
        for step in range(calls):
            log_metric("loss", 0.5, step)
        cpu = min(cpu, (time.thread_time() - started_cpu) / calls)
        wall = min(wall, (time.perf_counter() - started_wall) / calls)
    run.stop(timeout=5)  # the hung backend holds it to the deadline
    hanging.release()
    stats = run.stats()
    spooled = sum(s.spooled for s in stats.backends.values())
    dropped = max(s.dropped for s in stats.backends.values())
    delivered = min(s.delivered for s in stats.backends.values())
    return cpu, wall, spooled, dropped, delivered


def _per_call(figures: tuple[float, float, int, int, int]) -> str:
    return f"{figures[0] * 1e9:.0f} ns CPU, {figures[1] * 1e9:.0f} ns wall per call"


def bench_caller(calls: int, spool_dir: Path) -> list[tuple[str, str, str]]:
    healthy = _caller_cost(["recording", "fixture-good"], calls, spool_dir)
    down = _caller_cost(["recording", "fixture-hanging"], calls, spool_dir)
    return [
        ("3. caller cost", f"2 healthy backends, {calls:,} calls x 5", _per_call(healthy)),
        ("", "1 healthy + 1 hung, spilling", _per_call(down)),
        ("", "ratio down / healthy (goal <= 1.5x)", f"{down[0] / healthy[0]:.2f}x CPU, {down[1] / healthy[1]:.2f}x wall"),
        ("", "hung backend: spooled / dropped", f"{down[2]:,} / {down[3]:,} (healthy run dropped {healthy[3]:,})"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", type=int, default=5_000_000, help="metrics logged in the memory benchmark")
    parser.add_argument("--spool-records", type=int, default=2_000_000)
    parser.add_argument("--calls", type=int, default=50_000, help="log_metric calls per repeat in the caller benchmark")
    parser.add_argument("--only", choices=["memory", "spool", "caller"])
    arguments = parser.parse_args()
    os.environ.pop("TRACELET_STRICT", None)  # measure what users get
    os.environ.setdefault("TRACELET_DISABLE_PLUGINS", "fixture-broken")  # a fixture that fails to load on purpose
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="tracelet-bench-") as scratch:
        root = Path(scratch)
        if arguments.only in (None, "memory"):  # first: the peak RSS must not include the other benchmarks
            rows += bench_memory(arguments.metrics, root / "memory")
        if arguments.only in (None, "spool"):
            rows += bench_spool(arguments.spool_records, root)
        if arguments.only in (None, "caller"):
            rows += bench_caller(arguments.calls, root / "caller")
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
