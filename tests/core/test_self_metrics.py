"""Tracelet's own metrics (``self_metrics = true``): what a user sees in their tracker about delivery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tracelet.records import Metric
from tracelet.run import Run
from tracelet.selfmetrics import percentile
from tracelet.testing import RecordingBackend

Start = Callable[..., Run]
SUFFIXES = ("queue", "spooled", "delivered", "latency_p50", "latency_p99", "breaker")
FAST = {"self_metrics": True, "self_metrics_interval": 0.2, "batch_linger": 0.0}


def recording(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def own_metrics(backend: RecordingBackend, name: str) -> list[tuple[int, float, int]]:
    """``(step, value, position in the records)`` of one self metric, in arrival order."""
    return [
        (record.step, record.value, position)
        for position, record in enumerate(list(backend.records))
        if isinstance(record, Metric) and record.name == name
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_every_figure_per_backend_and_delivered_ends_at_the_count(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], **FAST)
    backend = recording(run)
    for step in range(500):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    assert run.flush(timeout=20)
    wait_for(lambda: len(own_metrics(backend, "tracelet/recording/delivered")) >= 5)
    assert run.stop(timeout=20)

    names = {record.name for record in backend.metrics if record.name.startswith("tracelet/")}
    assert names == {f"tracelet/recording/{suffix}" for suffix in SUFFIXES}
    delivered = own_metrics(backend, "tracelet/recording/delivered")
    assert [step for step, _, _ in delivered] == list(range(len(delivered)))  # the sample number is the step
    values = [value for _, value, _ in delivered]
    assert values == sorted(values)  # a running total
    # Once the loop's records are delivered, a sample's figure is every record the backend held when it
    # was taken: the 500 points, the earlier samples, all before the sample's own records.
    _, last, position = delivered[-1]
    assert last == position - 2  # a sample holds queue, spooled, delivered, ...: in that order
    assert last >= 500
    assert {value for _, value, _ in own_metrics(backend, "tracelet/recording/breaker")} == {0.0}
    assert all(value >= 0.0 for _, value, _ in own_metrics(backend, "tracelet/recording/latency_p99"))


def test_the_breaker_figure_is_1_while_a_backend_is_down(tracelet_start: Start) -> None:
    run = tracelet_start(
        backends=["recording", "fixture-flaky"],
        config={"fixture-flaky": {"fail_first": 10**9}},
        retry_attempts=1,
        breaker_threshold=1,
        breaker_cooldown=600.0,
        **FAST,
    )
    backend = recording(run)
    run.log_metric("loss", 0.5, step=0)
    wait_for(lambda: any(value == 1.0 for _, value, _ in own_metrics(backend, "tracelet/fixture-flaky/breaker")))
    wait_for(lambda: any(value > 0 for _, value, _ in own_metrics(backend, "tracelet/fixture-flaky/spooled")))
    assert {value for _, value, _ in own_metrics(backend, "tracelet/recording/breaker")} == {0.0}
    assert not run.stop(timeout=1)  # the flaky backend delivered nothing: its records stay in the spool
    assert run.stats()["fixture-flaky"].breaker == "open"


def test_nothing_when_off_no_thread_no_figure(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], self_metrics_interval=0.05, batch_linger=0.0)
    for step in range(100):
        run.log_metric("loss", 0.5, step=step)
    assert run.flush(timeout=20)
    time.sleep(0.3)
    assert "tracelet-collector-self-metrics" not in {thread.name for thread in threading.enumerate()}
    assert run.stop(timeout=20)
    assert [record.name for record in recording(run).metrics] == ["loss"] * 100


def test_the_sampler_runs_on_its_own_thread_only_when_on(tracelet_start: Start) -> None:
    run = tracelet_start(backends=["recording"], **FAST)
    assert "tracelet-collector-self-metrics" in {thread.name for thread in threading.enumerate()}
    assert run.stop(timeout=20)
    assert "tracelet-collector-self-metrics" not in {thread.name for thread in threading.enumerate()}


@pytest.mark.parametrize(("fraction", "expected"), [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0), (0.001, 1.0)])
def test_percentiles_are_nearest_rank(fraction: float, expected: float) -> None:
    assert percentile([float(value) for value in range(1, 101)], fraction) == expected
    assert percentile([7.0], fraction) == 7.0
