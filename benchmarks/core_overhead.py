"""Core benchmarks: the hot path, start() latency and import cost, each against a baseline in the same run.

Run: ``python benchmarks/core_overhead.py`` in an environment with tracelet-core
installed (``tox -e bench-core`` does that). Prints a table; the README's
performance section quotes it.

1. ``tracelet.log_metric`` with four recording backends attached, per call,
   vs ``queue.SimpleQueue.put`` of a tuple built from the same values. Caller
   cost is measured as the calling thread's CPU time (``time.thread_time``),
   which is what the training loop pays; wall time is shown too, and it also
   contains the GIL time the router and worker threads take meanwhile.
2. ``tracelet.start()`` return time with four backends whose start takes 1 s.
3. ``python -c "import tracelet"`` vs importing its four dependencies (medians of 31
   fresh interpreters each, interleaved).
"""

from __future__ import annotations

import queue
import statistics
import subprocess
import sys
import time

import tracelet
from tracelet.testing import recording_plugin

CALLS = 200_000
REPEATS = 5
BACKENDS = ["recording", "bench-2", "bench-3", "bench-4"]


def _per_call(function: object, calls: int) -> tuple[float, float]:
    """(caller CPU seconds per call, wall seconds per call), best of REPEATS."""
    cpu, wall = [], []
    for _ in range(REPEATS):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        function(calls)  # type: ignore[operator]
        cpu.append((time.thread_time() - start_cpu) / calls)
        wall.append((time.perf_counter() - start_wall) / calls)
    return min(cpu), min(wall)


def bench_hot_path() -> list[tuple[str, str, str]]:
    for name in BACKENDS[1:]:
        tracelet.register_plugin(recording_plugin(name))
    simple_queue: queue.SimpleQueue[tuple[str, float, int, float]] = queue.SimpleQueue()
    now = time.time

    def baseline(calls: int) -> None:
        put = simple_queue.put
        for step in range(calls):
            put(("loss", 0.5, step, now()))
        while not simple_queue.empty():
            simple_queue.get_nowait()

    # A tight loop logs ~1M metrics/s, faster than four backends drain on a shared GIL; the
    # queue is sized for the whole burst so the run below also proves nothing is lost.
    run = tracelet.start(backends=BACKENDS, strict=True, queue_size=2 * CALLS * (REPEATS + 1))
    log_metric = tracelet.log_metric

    def traced(calls: int) -> None:
        for step in range(calls):
            log_metric("loss", 0.5, step)
        run.flush()

    def traced_no_flush(calls: int) -> None:
        for step in range(calls):
            log_metric("loss", 0.5, step)

    base_cpu, base_wall = _per_call(baseline, CALLS)
    cpu, wall = _per_call(traced_no_flush, CALLS)
    run.flush()
    started = time.perf_counter()
    traced(CALLS)
    end_to_end = CALLS / (time.perf_counter() - started)
    run.stop()
    expected = CALLS * (REPEATS + 1)
    delivered = {name: stats.delivered for name, stats in run.stats().backends.items()}
    assert set(delivered.values()) == {expected}, (delivered, expected)
    delivered_total = sum(delivered.values())
    return [
        ("SimpleQueue.put(tuple) per call (baseline)", f"{base_cpu * 1e9:.0f} ns CPU / {base_wall * 1e9:.0f} ns wall", ""),
        (
            "tracelet.log_metric, 4 backends, per call",
            f"{cpu * 1e9:.0f} ns CPU / {wall * 1e9:.0f} ns wall",
            f"{cpu / base_cpu:.2f}x CPU, {wall / base_wall:.2f}x wall (goal <= 5x)",
        ),
        (
            "end to end: logged and delivered to all 4 backends",
            f"{end_to_end:,.0f} metrics/s",
            f"{delivered_total:,} delivered, 0 lost",
        ),
    ]


def bench_start() -> list[tuple[str, str, str]]:
    slow = {name: {"start_delay": 1.0} for name in BACKENDS}
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run = tracelet.start(backends=BACKENDS, config=slow, strict=True)
        timings.append(time.perf_counter() - started)
        run.log_metric("x", 1.0)
        run.stop()
        assert run.stats()["bench-4"].delivered == 1
    return [
        (
            "tracelet.start(), 4 backends taking 1 s each to start",
            f"{statistics.median(timings) * 1e3:.1f} ms (median of {REPEATS})",
            f"goal <= 50 ms; starting them in turn would take 4000 ms ({4.0 / statistics.median(timings):.0f}x)",
        )
    ]


def _import_times(statements: list[str], repeats: int = 31) -> list[float]:
    """Median wall time of ``python -c statement`` for each statement, interleaved so both see the same load."""
    timings: list[list[float]] = [[] for _ in statements]
    for _ in range(repeats):
        for statement, measured in zip(statements, timings, strict=True):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", statement], check=True)
            measured.append(time.perf_counter() - started)
    return [statistics.median(measured) for measured in timings]


def bench_import() -> list[tuple[str, str, str]]:
    bare, dependencies, tracelet_import = _import_times(["pass", "import pluggy, attrs, cattrs, structlog", "import tracelet"])
    return [
        ("python -c pass", f"{bare * 1e3:.0f} ms", ""),
        ("python -c 'import pluggy, attrs, cattrs, structlog' (baseline)", f"{dependencies * 1e3:.0f} ms", ""),
        (
            "python -c 'import tracelet' (every installed plugin present)",
            f"{tracelet_import * 1e3:.0f} ms",
            f"{tracelet_import / dependencies:.2f}x (goal <= 1.2x)",
        ),
    ]


def main() -> None:
    rows = [("measurement", "result", "ratio")]
    rows += bench_hot_path()
    rows += bench_start()
    rows += bench_import()
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
