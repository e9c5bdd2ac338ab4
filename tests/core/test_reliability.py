"""Retries, the circuit breaker and the spool, with real failing backends on real threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.run import Run
from tracelet.spool import MAGIC, BackendSpool, decode_record, encode_record, encode_records
from tracelet.testing import RecordingBackend

FAST_RETRIES = {"retry_attempts": 2, "retry_base": 0.005, "retry_cap": 0.01, "breaker_threshold": 3, "breaker_cooldown": 0.2}


def _backend(run: Run, name: str) -> RecordingBackend:
    backend = run.get_plugin(name)
    assert isinstance(backend, RecordingBackend)
    return backend


def test_a_backend_failing_its_first_batches_gets_everything_in_order_without_duplicates(
    tracelet_start: Callable[..., Run],
) -> None:
    run = tracelet_start(backends=["fixture-flaky", "recording"], config={"fixture-flaky": {"fail_first": 7}}, **FAST_RETRIES)
    for step in range(2000):
        run.log_metric("loss", step / 10, step=step)
        if step == 100:
            run.log_params({"lr": 0.1})
        if step % 200 == 0:
            time.sleep(0.02)  # a training loop: the backend fails and recovers while we log
    flaky = _backend(run, "fixture-flaky")
    # The healthy backend never waited on the flaky one's retries.
    assert run.stats()["recording"].retries == 0
    assert run.stop(timeout=20) is True
    assert flaky.attempts > 7
    assert [m.step for m in flaky.metrics] == list(range(2000))  # every record once, in logging order
    assert [m.value for m in flaky.metrics] == [step / 10 for step in range(2000)]
    assert flaky.params == {"lr": 0.1}
    assert flaky.records.index(tracelet.Param("lr", 0.1)) == 101  # the param stayed between steps 100 and 101
    stats = run.stats()["fixture-flaky"]
    assert (stats.delivered, stats.failed, stats.dropped, stats.spooled) == (2001, 0, 0, 0)
    assert stats.retries == 7
    assert flaky.status is tracelet.RunStatus.FINISHED
    assert _backend(run, "recording").metric_values("loss") == [(s, s / 10) for s in range(2000)]
    assert not Path(".tracelet/spool", run.id).exists()


def test_the_breaker_opens_records_go_to_the_spool_and_the_backlog_comes_first_on_recovery(
    tracelet_start: Callable[..., Run],
) -> None:
    options = dict(FAST_RETRIES, breaker_cooldown=0.5)
    run = tracelet_start(backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 3}}, **options)
    run.log_metric("m", 0.0, step=0)
    deadline = time.monotonic() + 5
    while run.stats()["fixture-flaky"].breaker != "open" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.stats()["fixture-flaky"].breaker == "open"
    for step in range(1, 300):
        run.log_metric("m", float(step), step=step)
    deadline = time.monotonic() + 5
    while run.stats()["fixture-flaky"].spooled < 300 and time.monotonic() < deadline:
        time.sleep(0.01)  # routing waits out the linger first
    stats = run.stats()["fixture-flaky"]
    assert stats.spooled == 300 and stats.delivered == 0  # the breaker is open: everything is on disk
    assert run.flush(timeout=10) is False  # returns at once: a flush cannot succeed while the backend is down
    deadline = time.monotonic() + 10
    while run.stats()["fixture-flaky"].spooled and time.monotonic() < deadline:
        time.sleep(0.02)  # the half-open probe succeeds after the cool-down and the backlog is delivered
    for step in range(300, 310):
        run.log_metric("m", float(step), step=step)
    assert run.flush(timeout=5) is True
    flaky = _backend(run, "fixture-flaky")
    assert [m.step for m in flaky.metrics] == list(range(310))
    assert run.stats()["fixture-flaky"].breaker == "closed"


def test_a_permanent_error_is_not_retried_and_the_batch_is_kept_aside(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(
        backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 0, "reject_step": 3}}, **FAST_RETRIES
    )
    for step in range(5):
        run.log_metric("m", float(step), step=step)
        assert run.flush(5) is (step != 3)  # flush reports the loss once
    flaky = _backend(run, "fixture-flaky")
    assert flaky.attempts == 5  # the refused batch was tried once
    assert [m.step for m in flaky.metrics] == [0, 1, 2, 4]
    stats = run.stats()["fixture-flaky"]
    assert (stats.delivered, stats.failed, stats.retries, stats.breaker) == (4, 1, 0, "closed")
    assert stats.last_error == "tracelet_backend_log_metrics: PermanentError: fixture-flaky: step 3 is invalid"
    run.stop(timeout=5)
    rejected = list(Path(".tracelet/spool", run.id, "fixture-flaky", "rejected").glob("*.seg"))
    assert len(rejected) == 1
    spool = BackendSpool.open_existing(rejected[0].parent, run.info, "fixture-flaky")
    records, _, _ = spool.read(10)
    assert records == [tracelet.Metric("m", 3.0, 3, records[0].timestamp)]


def test_a_backend_that_cannot_start_yet_is_retried_and_gets_what_was_logged_meanwhile(
    tracelet_start: Callable[..., Run],
) -> None:
    run = tracelet_start(backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 0, "fail_start": 4}}, **FAST_RETRIES)
    for step in range(500):
        run.log_metric("m", float(step), step=step)
    assert run.stop(timeout=10) is True
    flaky = _backend(run, "fixture-flaky")
    assert flaky.start_attempts == 5
    assert [m.step for m in flaky.metrics] == list(range(500))
    assert run.stats()["fixture-flaky"].state == "ended"


# --- the spool format -------------------------------------------------------------------------


RECORDS: list[tracelet.Metric | object] = [
    tracelet.Metric("loss/train", 0.25, 3, 1700000000.5),
    tracelet.Metric("ünïcode name", float("nan"), -1, 1.0),
    tracelet.Metric("big step", 1.0, 2**70, 2.0),
    tracelet.Param("optim.lr", 0.001),
    tracelet.Param("layers", "[1, 2]"),
    tracelet.Param("none", None),
    tracelet.Tag("git.commit", "abc"),
    tracelet.Artifact("/tmp/x.txt", "x.txt"),
    tracelet.Image("img", bytes(range(12)), 2, 2, 3, 1, 5.0),
    tracelet.Text("notes", "line\n\u2603", 2, 6.0),
    tracelet.Histogram("h", (0.0, 1.0, 2.0), (3.0, 4.0), 0.0, 2.0, 7.0, 7, 9.0, 4, 7.0),
    tracelet.Figure("fig", b"\x89PNG...", 5, 8.0),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_every_record_type_round_trips_through_the_spool_format(record: object) -> None:
    decoded = decode_record(encode_record(record))  # type: ignore[arg-type]
    assert type(decoded) is type(record)
    if isinstance(record, tracelet.Metric) and record.value != record.value:
        assert decoded.name == record.name and decoded.value != decoded.value  # type: ignore[union-attr]
    else:
        assert decoded == record


def _spool(directory: Path) -> BackendSpool:
    info = tracelet.RunInfo("0" * 32, "p", "n", 0.0, "0", ("b",), ("b",))
    return BackendSpool(directory, info, "b", fsync_interval=0.0)


def test_a_torn_last_frame_loses_only_that_record_and_is_never_misread(tmp_path: Path) -> None:
    spool = _spool(tmp_path / "spool")
    metrics = [tracelet.Metric("m", float(i), i, 1.0) for i in range(10)]
    frames, ends = encode_records(metrics)
    spool.append(frames, 10)
    spool.close(None)  # left undelivered: kept on disk
    (segment,) = (tmp_path / "spool").glob("*.seg")
    data = segment.read_bytes()
    assert data.startswith(MAGIC)
    segment.write_bytes(data[: len(MAGIC) + ends[8] + 5])  # a crash in the middle of the last record
    reopened = BackendSpool.open_existing(tmp_path / "spool", spool._run, "b")
    records, _, _ = reopened.read(100)
    assert records == metrics[:9]


def test_a_corrupt_frame_is_detected_by_its_checksum(tmp_path: Path) -> None:
    spool = _spool(tmp_path / "spool")
    metrics = [tracelet.Metric("m", float(i), i, 1.0) for i in range(4)]
    frames, ends = encode_records(metrics)
    spool.append(frames, 4)
    spool.close(None)
    (segment,) = (tmp_path / "spool").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[len(MAGIC) + ends[1] + 10] ^= 0xFF  # flip a bit inside the third record's payload
    segment.write_bytes(bytes(data))
    records, _, _ = BackendSpool.open_existing(tmp_path / "spool", spool._run, "b").read(100)
    assert records == metrics[:2]


def test_acknowledged_segments_are_deleted_and_a_partial_ack_survives_reopening(tmp_path: Path) -> None:
    spool = _spool(tmp_path / "spool")
    frames, _ = encode_records([tracelet.Metric("m", float(i), i, 1.0) for i in range(6)])
    spool.append(frames, 6)
    records, segment_id, ends = spool.read(4)
    assert [m.step for m in records] == [0, 1, 2, 3]  # type: ignore[union-attr]
    spool.ack(segment_id, ends[-1], 4)
    assert spool.pending == 2
    assert spool.close(None) is True
    reopened = BackendSpool.open_existing(tmp_path / "spool", spool._run, "b")
    records, segment_id, ends = reopened.read(100)
    assert [m.step for m in records] == [4, 5]  # type: ignore[union-attr]
    reopened.ack(segment_id, ends[-1], 2)
    assert not list((tmp_path / "spool").glob("*.seg"))


def test_a_loop_that_outruns_the_router_waits_for_room_instead_of_losing_records(
    tracelet_start: Callable[..., Run],
) -> None:
    # A 1000-record intake fills within a millisecond of a flat-out loop while the router encodes
    # everything for the spool of a hung backend: the loop waits for room (intake_full_wait) and
    # nothing is dropped.
    run = tracelet_start(backends=["fixture-hanging"], queue_size=1000)
    for step in range(100_000):
        run.log_metric("m", float(step), step=step)
    deadline = time.monotonic() + 20
    while run.stats()["fixture-hanging"].spooled < 100_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = run.stats()["fixture-hanging"]
    assert (stats.dropped, stats.spooled + stats.queued) == (0, 100_000)
