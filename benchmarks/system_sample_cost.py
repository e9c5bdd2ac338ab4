"""CPU cost of one sample of the ``system`` collector, against a bare psutil pair measured in the same run.

Baseline: ``psutil.cpu_percent(); psutil.virtual_memory()``, the least a
resource monitor does. Measured: ``SystemCollector.tracelet_collect_sample()``
as core calls it on the collector's thread (every metric, ``Metric`` records
built), with the default settings, with ``per_core``, and with the portable
psutil reader that non-Linux platforms use. CPU time of the calling thread
(``time.thread_time``), in interleaved rounds so that machine noise hits
every variant alike; the figure is the median over rounds.

    python benchmarks/system_sample_cost.py [--rounds 15] [--samples 300]

Needs tracelet-core and tracelet-system installed. Goal: ratio <= 3.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import psutil

from tracelet.info import RunInfo
from tracelet_system import SystemCollector, SystemSettings
from tracelet_system.counters import PsutilReader
from tracelet_system.resources import ResourceSampler


def _collector(**settings: object) -> SystemCollector:
    collector = SystemCollector(SystemSettings(environment=False, requirements=False, **settings))  # type: ignore[arg-type]
    collector.tracelet_collect_start(RunInfo("0" * 32, "bench", "bench", time.time(), "0", (), ()))
    return collector


def _with_psutil_reader() -> SystemCollector:
    collector = _collector()
    collector._sampler = ResourceSampler(psutil, per_core=False, disk_path=".", reader=PsutilReader(psutil, per_core=False))
    return collector


def _cost(function: Callable[[], object], samples: int) -> float:
    """Microseconds of this thread's CPU time per call."""
    start = time.thread_time()
    for _ in range(samples):
        function()
    return (time.thread_time() - start) / samples * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--samples", type=int, default=300)
    arguments = parser.parse_args()

    def baseline() -> None:
        psutil.cpu_percent()
        psutil.virtual_memory()

    collectors = {
        "system sample (default settings)": _collector(),
        "system sample, per_core=true": _collector(per_core=True),
        "system sample, psutil reader (non-Linux path)": _with_psutil_reader(),
    }
    variants: dict[str, Callable[[], object]] = {"baseline: cpu_percent() + virtual_memory()": baseline}
    variants.update({name: collector.tracelet_collect_sample for name, collector in collectors.items()})
    for function in variants.values():  # warm up: first samples, caches, lazy imports
        _cost(function, 20)
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(arguments.rounds):
        for name, function in variants.items():
            results[name].append(_cost(function, arguments.samples))
    counts = {name: len(collector.tracelet_collect_sample()) for name, collector in collectors.items()}
    for collector in collectors.values():
        collector.tracelet_collect_stop()

    base = statistics.median(results["baseline: cpu_percent() + virtual_memory()"])
    print(f"CPU time per sample, median of {arguments.rounds} rounds x {arguments.samples} samples (time.thread_time)")
    print(f"psutil {psutil.__version__}, {psutil.cpu_count()} logical CPUs")
    for name, costs in results.items():
        median = statistics.median(costs)
        what = f", {counts[name]} metrics" if name in counts else ""
        print(f"{name:48s} {median:7.1f} us  {median / base:5.2f}x  (min {min(costs):.1f}, max {max(costs):.1f}{what})")


if __name__ == "__main__":
    main()
