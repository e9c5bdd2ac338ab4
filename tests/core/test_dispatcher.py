"""The worker pool: ordering, batching, isolation from broken, hung and slow backends, deadlines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_fixtures import hanging


def test_order_is_kept_across_record_kinds_and_batches_respect_the_backend_maximum(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["fixture-good"], batch_linger=0.05)  # fixture-good declares max_batch_size=100
    for step in range(250):
        run.log_metric("a", float(step), step=step)
    run.log_params({"p": 1})
    run.log_metric("b", 1.0, step=250)
    assert run.flush(10)
    backend = run.get_plugin("fixture-good")
    assert isinstance(backend, RecordingBackend)
    assert [(m.name, m.step) for m in backend.metrics] == [("a", s) for s in range(250)] + [("b", 250)]
    assert type(backend.records[250]) is tracelet.Param
    sizes = [size for hook, size in backend.calls if hook == "tracelet_backend_log_metrics"]
    assert max(sizes) == 100 and sum(sizes) == 251
    hooks = [hook for hook, _ in backend.calls]
    assert hooks.index("tracelet_backend_log_params") > hooks.index("tracelet_backend_log_metrics")


def test_records_from_several_threads_all_arrive(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    def log(thread: int) -> None:
        for step in range(2000):
            tracelet_run.log_metric(f"t{thread}", float(step), step=step)

    threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracelet_run.flush(10)
    for n in range(4):
        assert [step for step, _ in tracelet_recording.metric_values(f"t{n}")] == list(range(2000))


def test_backends_run_on_their_own_threads(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording", "fixture-good"])
    run.log_metric("x", 1.0)
    assert run.flush(5)
    assert run.get_plugin("recording").thread_names == {"tracelet-backend-recording"}  # type: ignore[attr-defined]
    assert run.get_plugin("fixture-good").thread_names == {"tracelet-backend-fixture-good"}  # type: ignore[attr-defined]


def test_a_raising_backend_is_isolated_retried_and_spooled(
    tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(backends=["fixture-raising", "recording"], retry_attempts=2, retry_base=0.01, breaker_cooldown=60)
    for step in range(10):
        run.log_metric("x", float(step), step=step)
    run.log_params({"a": 1})
    assert run.flush(5) is False  # not everything was delivered
    assert run.get_plugin("recording").metric_values("x") == [(s, float(s)) for s in range(10)]  # type: ignore[attr-defined]
    stats = run.stats()
    # two calls of the batch, then poison isolation splits it down to its first record (5, 2, 1 records),
    # which fails alone too: the backend is down, not the batch bad, so nothing is set aside
    assert run.get_plugin("fixture-raising").attempts == 5  # type: ignore[attr-defined]
    assert (stats["fixture-raising"].delivered, stats["fixture-raising"].spooled, stats["fixture-raising"].failed) == (0, 11, 0)
    assert (stats["fixture-raising"].retries, stats["fixture-raising"].breaker) == (5, "open")
    assert (
        stats["fixture-raising"].last_error == "tracelet_backend_log_metrics: RuntimeError: fixture-raising: cannot log 1 metrics"
    )
    assert (stats["recording"].delivered, stats["recording"].failed) == (11, 0)
    started = time.monotonic()
    assert run.stop(timeout=5) is False
    assert time.monotonic() - started < 1  # the breaker stays open past the deadline: no point waiting for it
    assert run.get_plugin("recording").status is tracelet.RunStatus.FINISHED  # type: ignore[attr-defined]
    failures = [r.getMessage() for r in tracelet_logs.records if "backend hook failed" in r.getMessage()]
    assert any("plugin='fixture-raising' hook='tracelet_backend_log_metrics'" in m for m in failures)
    spool = Path(".tracelet/spool", run.id, "fixture-raising")
    assert json.loads((spool / "meta.json").read_text())["status"] == "FINISHED"


def test_a_backend_that_fails_to_start_for_good_counts_its_records_as_failed(tracelet_start: Callable[..., Run]) -> None:
    class Plugin:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> tracelet.PluginInfo:
            return tracelet.PluginInfo(name="no-start", kind="backend", factory=lambda _: Unstartable(), enabled_by_default=False)

    class Unstartable:
        @tracelet.hookimpl
        def tracelet_backend_start(self, run: tracelet.RunInfo) -> None:
            raise tracelet.PermanentError("invalid API key")

    tracelet.register_plugin(Plugin())
    try:
        run = tracelet_start(backends=["no-start", "recording"])
        run.log_metric("x", 1.0)
        assert run.flush(5) is False
        stats = run.stats()["no-start"]
        assert (stats.state, stats.failed, stats.retries, stats.last_error) == (
            "failed",
            1,
            0,
            "tracelet_backend_start: PermanentError: invalid API key",
        )
        assert run.stats()["recording"].delivered == 1
    finally:
        tracelet.unregister_plugin("no-start")


def test_a_hung_backend_delays_only_itself_and_stop_returns_by_its_deadline(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["fixture-hanging", "recording"])
    run.log_metric("first", 1.0)
    assert run.get_plugin("fixture-hanging").entered.wait(5)  # type: ignore[attr-defined]
    for step in range(100):
        run.log_metric("x", float(step), step=step)
    assert run.flush(timeout=0.5) is False
    assert len(run.get_plugin("recording").metric_values("x")) == 100  # type: ignore[attr-defined]
    started = time.monotonic()
    assert run.stop(timeout=2) is False
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4, elapsed
    stats = run.stats()
    # Undelivered at the deadline (the 100 queued and the one stuck in the hook): in the spool, not lost.
    assert (stats["fixture-hanging"].spooled, stats["fixture-hanging"].dropped) == (101, 0)
    assert stats["recording"].state == "ended"
    assert run.get_plugin("recording").status is tracelet.RunStatus.FINISHED  # type: ignore[attr-defined]
    hanging.release()


def test_start_does_not_wait_for_slow_backends(tracelet_start: Callable[..., Run]) -> None:
    started = time.monotonic()
    run = tracelet_start(backends=["fixture-slow"])  # takes 1 s to start on its worker
    returned = time.monotonic() - started
    assert returned < 0.5, returned
    run.log_metric("early", 1.0, step=1)
    assert run.stats()["fixture-slow"].state == "starting"
    assert run.flush(10)
    assert run.get_plugin("fixture-slow").metric_values("early") == [(1, 1.0)]  # type: ignore[attr-defined]


def test_a_full_queue_spills_to_the_spool_and_delivers_everything_in_order_later(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["fixture-hanging", "recording"], queue_size=50, spool_after=60)
    run.log_metric("first", 1.0)
    hung = run.get_plugin("fixture-hanging")
    assert hung.entered.wait(5)  # type: ignore[attr-defined]
    for step in range(120):
        run.log_metric("x", float(step), step=step)
        if step % 10 == 9:
            time.sleep(0.01)  # let the router keep up, so the intake itself never overflows
    assert run.flush(timeout=0.5) is False
    stats = run.stats()["fixture-hanging"]
    assert stats.queued <= 50  # memory stays bounded: the rest is on disk
    assert stats.spooled >= 70
    assert stats.queued + stats.spooled == 121  # nothing unaccounted for
    assert stats.dropped == 0
    hanging.release()
    assert run.flush(timeout=5) is True
    stats = run.stats()["fixture-hanging"]
    assert (stats.delivered, stats.spooled, stats.dropped) == (121, 0, 0)
    assert [m.step for m in hung.records if m.name == "x"] == list(range(120))  # type: ignore[attr-defined]
    assert run.stats()["recording"].delivered == 121  # the healthy backend lost nothing
    assert run.stop(timeout=5) is True
    assert not Path(".tracelet/spool", run.id).exists()  # acknowledged segments are deleted


def test_flush_waits_for_backend_flush_hooks(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    tracelet_run.log_metric("x", 1.0)
    assert tracelet_run.flush(5)
    assert tracelet_recording.calls[-1] == ("tracelet_backend_flush", 0)
    assert tracelet_recording.flushes == 1


def test_stop_ends_every_backend_after_delivering_everything(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording", "fixture-good"])
    for step in range(1000):
        run.log_metric("x", float(step), step=step)
    assert run.stop(timeout=10) is True
    for name in ("recording", "fixture-good"):
        backend = run.get_plugin(name)
        assert len(backend.metric_values("x")) == 1000  # type: ignore[attr-defined]
        assert [hook for hook, _ in backend.calls[-2:]] == ["tracelet_backend_flush", "tracelet_backend_end"]  # type: ignore[attr-defined]
        assert run.stats()[name].state == "ended"
    assert not [t for t in threading.enumerate() if t.name.startswith("tracelet-") and t.is_alive()]
