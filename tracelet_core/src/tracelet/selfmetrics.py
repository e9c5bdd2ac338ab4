"""Tracelet's own metrics: how delivery is doing, logged as metrics of the run itself (``self_metrics = true``).

A collector built into core, run by the same machinery as collector plugins
(:class:`~tracelet.collectors.CollectorThread`, a thread of its own): every
``self_metrics_interval`` seconds it reads each backend worker's figures and
returns, per backend ``B``:

=============================  ==========================================================================
``tracelet/B/queue``           records waiting in memory
``tracelet/B/spooled``         records on disk, not delivered yet
``tracelet/B/delivered``       records delivered so far (a running total)
``tracelet/B/latency_p50``     seconds from logging to delivery, median of the batches delivered since the
                               last sample (left out when none was)
``tracelet/B/latency_p99``     the same, 99th percentile
``tracelet/B/breaker``         the circuit breaker: 0 closed, 1 open, 0.5 half-open (one probe call allowed)
=============================  ==========================================================================

The step is the sample's number (0, 1, 2, ...), as for tracelet-system's
samples. The records reach every backend like any other, so a user sees in
their tracker when one backend fell behind (the others still deliver its
figures).

Latency is measured on each backend's worker thread, once per delivered
batch (the batch's first record: its timestamp, the time it was logged unless
the caller gave one, to the hook's return), into a window of the newest
:data:`~tracelet.worker.LATENCY_WINDOW` batches that each sample empties.
The logging calls do no extra work. With ``self_metrics`` off, none of this
exists: no thread, no window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from tracelet.delivery import BreakerState
from tracelet.hookspecs import hookimpl
from tracelet.records import Metric
from tracelet.worker import BackendWorker

__all__ = ["BREAKER_VALUES", "NAME", "SelfMetrics", "percentile"]

NAME = "self-metrics"
"""The collector's name (its thread is ``tracelet-collector-self-metrics``); not a plugin."""

PREFIX = "tracelet/"

BREAKER_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 0.5, BreakerState.OPEN: 1.0}
"""``tracelet/<backend>/breaker``: closed 0, half-open 0.5, open 1 (a chart shows how long it stayed open)."""


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of sorted, non-empty ``ordered`` (nearest rank)."""
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least the first
    return ordered[int(rank) - 1]


class SelfMetrics:
    """The collector object: its hooks are called on its own collector thread."""

    def __init__(self, workers: Sequence[BackendWorker], interval: float) -> None:
        self._workers = tuple(workers)
        self._interval = interval
        self._samples = 0
        for worker in self._workers:
            worker.measure_latency()

    @hookimpl
    def tracelet_collect_interval(self) -> float:
        return self._interval

    @hookimpl
    def tracelet_collect_sample(self) -> list[Metric]:
        step, now = self._samples, time.time()
        self._samples += 1
        records: list[Metric] = []
        for worker in self._workers:
            stats = worker.stats()
            prefix = f"{PREFIX}{worker.name}/"
            values = [
                ("queue", float(stats.queued)),
                ("spooled", float(stats.spooled)),
                ("delivered", float(stats.delivered)),
            ]
            latencies = sorted(worker.take_latencies())
            if latencies:
                values += [("latency_p50", percentile(latencies, 0.5)), ("latency_p99", percentile(latencies, 0.99))]
            values.append(("breaker", BREAKER_VALUES[worker.breaker_state]))
            records.extend(Metric(prefix + name, value, step, now) for name, value in values)
        return records
