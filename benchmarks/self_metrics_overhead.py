"""What Tracelet's own metrics (``self_metrics = true``) cost the training loop, against the same loop with them off.

Run: ``python benchmarks/self_metrics_overhead.py`` in an environment with
tracelet-core installed. Both settings run in the same process, alternating,
best of REPEATS each:

1. ``tracelet.log_metric`` per call with four recording backends attached:
   the calling thread's CPU time (``time.thread_time``, what the loop pays)
   and wall time (which also holds the GIL time the other threads take).
2. End to end: CALLS metrics logged and delivered to all four backends (``flush()``).

The sampler runs every 0.1 s here (100x the default 10 s) so that its cost shows at all.
"""

from __future__ import annotations

import time

import tracelet
from tracelet.testing import recording_plugin

CALLS = 200_000
REPEATS = 5
BACKENDS = ["recording", "bench-2", "bench-3", "bench-4"]
INTERVAL = 0.1


def measure(self_metrics: bool) -> tuple[float, float, float]:
    """(caller CPU s per call, wall s per call, end-to-end metrics/s) of one run."""
    run = tracelet.start(
        backends=BACKENDS,
        strict=True,
        queue_size=2 * CALLS,
        self_metrics=self_metrics,
        self_metrics_interval=INTERVAL,
    )
    log_metric = tracelet.log_metric
    started_cpu, started_wall = time.thread_time(), time.perf_counter()
    for step in range(CALLS):
        log_metric("loss", 0.5, step)
    cpu, wall = time.thread_time() - started_cpu, time.perf_counter() - started_wall
    assert run.flush(timeout=600)
    end_to_end = CALLS / (time.perf_counter() - started_wall)
    run.stop()
    delivered = run.stats()["bench-4"].delivered
    assert delivered >= CALLS, delivered
    own = [r for r in run.get_plugin("recording").metrics if r.name.startswith("tracelet/")]  # type: ignore[attr-defined]
    assert bool(own) == self_metrics, len(own)
    return cpu / CALLS, wall / CALLS, end_to_end


def main() -> None:
    for name in BACKENDS[1:]:
        tracelet.register_plugin(recording_plugin(name))
    results: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
    for _ in range(REPEATS):
        for setting in (False, True):
            results[setting].append(measure(setting))
    off_cpu, off_wall = min(r[0] for r in results[False]), min(r[1] for r in results[False])
    on_cpu, on_wall = min(r[0] for r in results[True]), min(r[1] for r in results[True])
    off_rate, on_rate = max(r[2] for r in results[False]), max(r[2] for r in results[True])
    rows = [
        ("log_metric, 4 backends, self_metrics off", f"{off_cpu * 1e9:.0f} ns CPU / {off_wall * 1e9:.0f} ns wall", ""),
        (
            f"log_metric, 4 backends, self_metrics on (every {INTERVAL} s)",
            f"{on_cpu * 1e9:.0f} ns CPU / {on_wall * 1e9:.0f} ns wall",
            f"{on_cpu / off_cpu:.2f}x CPU, {on_wall / off_wall:.2f}x wall",
        ),
        ("end to end, self_metrics off", f"{off_rate:,.0f} metrics/s", ""),
        ("end to end, self_metrics on", f"{on_rate:,.0f} metrics/s", f"{on_rate / off_rate:.2f}x"),
    ]
    width = max(len(row[0]) for row in rows)
    for label, figure, ratio in rows:
        print(f"{label:<{width}}  {figure:<28}  {ratio}")


if __name__ == "__main__":
    main()
