"""The spool's files under stress: a drained spool used again, a disk that fills and frees, crashes between.

A crash (SIGKILL) is simulated by abandoning a :class:`BackendSpool` without
``close()`` and opening its directory with ``open_existing``, as ``tracelet
replay`` does: what the process had written is on disk, nothing else is.
The full disk is a real one: a 512 KiB tmpfs mounted for the test (needs
root; skipped otherwise), and, where no tmpfs can be mounted, the same
errors injected at the spool's file layer (a fake disk, said so below).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tracelet
from tracelet import spool as spool_module
from tracelet.records import Record
from tracelet.replay import replay
from tracelet.run import Run
from tracelet.spool import MAGIC, BackendSpool, encode_records, find_spools
from tracelet_fixtures import hanging

NO_SPACE = os.strerror(errno.ENOSPC)
RUN = tracelet.RunInfo("0" * 32, "p", "n", 0.0, "0", ("recording",), ("recording",))


def _metrics(start: int, stop: int) -> list[tracelet.Metric]:
    return [tracelet.Metric("m", float(step), step, 1.0) for step in range(start, stop)]


def _append(spool: BackendSpool, records: list[tracelet.Metric]) -> None:
    frames, _ = encode_records(records)
    spool.append(frames, len(records))


def _drain(spool: BackendSpool) -> list[Record]:
    """Read and acknowledge everything, as a worker delivering it would."""
    delivered: list[Record] = []
    while True:
        records, segment_id, ends = spool.read(300)
        if not records:
            return delivered
        delivered.extend(records)
        spool.ack(segment_id, ends[-1], len(records))


def _steps(records: list[Record]) -> list[int]:
    return [record.step for record in records]  # type: ignore[union-attr]


def _after_crash(directory: Path) -> list[Record]:
    """What replay reads from ``directory`` (the writing process died without closing its spool).

    It reads a copy, so that the abandoned spool's own files stay as they are for the test to go on with.
    """
    copy = Path(tempfile.mkdtemp(prefix="tracelet-crashed-"))
    try:
        shutil.copytree(directory, copy / "spool")
        return _drain(BackendSpool.open_existing(copy / "spool", RUN, "recording"))
    finally:
        shutil.rmtree(copy)


def _segments(directory: Path) -> set[str]:
    return {path.name for path in directory.glob("*.seg")}


# --- a spool drained, then used again ----------------------------------------------------------------------


def test_a_spool_drained_once_then_left_by_a_crash_replays_every_record(tmp_path: Path) -> None:
    directory = tmp_path / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    _append(spool, _metrics(0, 4000))  # an outage: 4,000 records spooled, then delivered
    assert _steps(_drain(spool)) == list(range(4000))
    spool.reset_tail()  # the worker caught up: the spool starts afresh
    _append(spool, _metrics(4000, 9000))  # a later outage
    spool.maybe_sync()
    # The process is killed here. Before the fix, acked.json still said the first 4,000 records' bytes of
    # segment 10**15 were delivered, and the new segment reused that id: replay skipped 4,000 of these 5,000.
    assert _steps(_after_crash(directory)) == list(range(4000, 9000))


def test_segment_ids_are_never_reused_and_acked_json_names_only_segments_on_disk(tmp_path: Path) -> None:
    directory = tmp_path / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    used: set[str] = set()
    for round_ in range(3):
        _append(spool, _metrics(0, 100))
        spool.prepend(_metrics(100, 110))  # a batch the worker held: a head segment
        _append(spool, _metrics(110, 120))
        names = _segments(directory)
        assert len(names) == 2 and not names & used, (round_, names, used)
        used |= names
        _, segment_id, ends = spool.read(5)  # the head segment, partly delivered
        spool.ack(segment_id, ends[-1], 5)
        assert json.loads((directory / "acked.json").read_text()) == {str(segment_id): ends[-1]}
        _drain(spool)
        spool.reset_tail()
        assert _segments(directory) == set()
        assert not (directory / "acked.json").exists()  # nothing acknowledged of a segment that no longer exists
    assert spool.pending == 0


def test_a_crash_after_part_of_the_head_was_delivered_resumes_after_it(tmp_path: Path) -> None:
    directory = tmp_path / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    _append(spool, _metrics(10, 20))
    spool.prepend(_metrics(0, 10))
    records, segment_id, ends = spool.read(10)
    assert _steps(records) == list(range(10))
    spool.ack(segment_id, ends[-1], 10)  # the head segment is done and deleted
    records, segment_id, ends = spool.read(4)
    spool.ack(segment_id, ends[-1], 4)
    spool.maybe_sync()
    assert _steps(_after_crash(directory)) == list(range(14, 20))


def test_a_damaged_acked_json_sends_records_again_rather_than_skipping_them(tmp_path: Path) -> None:
    directory = tmp_path / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    _append(spool, _metrics(0, 10))
    spool.close(None)
    (segment,) = directory.glob("*.seg")
    (directory / "acked.json").write_text(json.dumps({segment.stem.lstrip("0"): 10**6}))  # beyond the segment's end
    assert _steps(_after_crash(directory)) == list(range(10))
    (directory / "acked.json").write_text("[1, 2]")  # not even a mapping
    assert _steps(_after_crash(directory)) == list(range(10))


# --- a disk that fills up, then frees ------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 512 KiB filesystem (tmpfs) that fills up; mounting needs root (CAP_SYS_ADMIN), else the test skips."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tracelet-test", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small filesystem")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=30)


def _fill(disk: Path) -> Path:
    """Write a file until the disk is full; deleting it frees the space again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file:
        with pytest.raises(OSError, match=NO_SPACE) as error:  # noqa: PT012 - the loop ends with the error
            while True:
                file.write(bytes(4096))
        assert error.value.errno == errno.ENOSPC
    return filler


def _outage_then_recovery(spool: BackendSpool, fill: object, free: object) -> list[int]:
    """Spool 1,000 records, fill the disk, fail three writes, free it, spool 2,000 more; the steps that must survive."""
    _append(spool, _metrics(0, 1000))
    fill()  # type: ignore[operator]
    for start in (1000, 2000, 3000):  # a disk full for a while: every write fails
        with pytest.raises(OSError, match=NO_SPACE) as error:
            _append(spool, _metrics(start, start + 1000))
        assert error.value.errno == errno.ENOSPC
    free()  # type: ignore[operator]
    _append(spool, _metrics(4000, 5000))
    _append(spool, _metrics(5000, 6000))
    spool.maybe_sync()
    return list(range(1000)) + list(range(4000, 6000))


def test_a_disk_full_for_a_while_loses_only_the_writes_that_failed(small_disk: Path) -> None:
    directory = small_disk / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    filler: list[Path] = []
    survivors = _outage_then_recovery(spool, lambda: filler.append(_fill(small_disk)), lambda: filler[0].unlink())
    # What the spool counts is what is on disk: the dispatcher counts the failed writes as dropped, the rest as spooled.
    assert spool.pending == len(survivors) == 3000
    assert _steps(_after_crash(directory)) == survivors  # before the fix: a torn frame mid-segment, 2,000 skipped
    assert _steps(_drain(spool)) == survivors  # and the live reader agrees
    assert spool.pending == 0


def test_a_head_segment_that_cannot_be_written_leaves_nothing_behind(small_disk: Path) -> None:
    directory = small_disk / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    _append(spool, _metrics(1000, 2000))
    filler = _fill(small_disk)
    with pytest.raises(OSError, match=NO_SPACE) as error:
        spool.prepend(_metrics(0, 1000))
    assert error.value.errno == errno.ENOSPC
    filler.unlink()
    # The caller counts those 1,000 as lost; a half-written head segment would have replayed some of them.
    assert len(_segments(directory)) == 1 and spool.pending == 1000
    spool.maybe_sync()
    assert _steps(_after_crash(directory)) == list(range(1000, 2000))


def test_a_spool_begun_on_a_full_disk_gets_its_meta_json_once_space_is_back(small_disk: Path) -> None:
    directory = small_disk / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)
    filler = _fill(small_disk)
    with pytest.raises(OSError, match=NO_SPACE):
        _append(spool, _metrics(0, 100))  # meta.json cannot be written
    filler.unlink()
    _append(spool, _metrics(100, 200))
    spool.maybe_sync()
    # Before the fix the segment was written without meta.json: replay never found it.
    assert find_spools(small_disk) == [directory]
    assert _steps(_after_crash(directory)) == list(range(100, 200))


def test_a_run_whose_spool_disk_fills_for_a_while_counts_exactly_what_replay_delivers(
    small_disk: Path, tracelet_start: Callable[..., Run]
) -> None:
    # The real router and worker: a backend that hangs, so everything goes to a spool on a disk that fills.
    run = tracelet_start(backends=["fixture-hanging"], spool_dir=str(small_disk / "spool"))

    def log_and_settle(start: int, stop: int) -> None:
        for step in range(start, stop):
            run.log_metric("m", float(step), step=step)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = run.stats()["fixture-hanging"]
            if stats.queued == 0 and stats.spooled + stats.dropped == stop:
                return
            time.sleep(0.02)
        raise AssertionError(run.stats()["fixture-hanging"])

    log_and_settle(0, 3000)  # the batch stuck in the hook goes to a head segment, the rest to the tail
    filler = _fill(small_disk)
    log_and_settle(3000, 6000)  # the spool's writes fail: dropped
    filler.unlink()
    log_and_settle(6000, 8000)
    assert run.stop(timeout=1) is False  # the backend hangs: what it has is left in the spool
    stats = run.stats()["fixture-hanging"]
    assert stats.spooled >= 5000 and stats.spooled + stats.dropped == 8000, stats
    hanging.release()  # the server is back
    (result,) = replay(small_disk / "spool", progress=None)
    steps = _steps(result.plugin.records)  # type: ignore[attr-defined]
    assert len(steps) == result.sent == stats.spooled  # what was counted spooled is what replay delivers
    assert steps == sorted(steps) and steps[:3000] == list(range(3000)) and steps[-2000:] == list(range(6000, 8000))
    assert result.ok


class _FakeFullDisk:
    """ENOSPC injected at the spool's file layer (``tracelet.spool._write``): a fake disk, for machines where
    no small filesystem can be mounted. ``room`` bytes more fit (a short write, then ENOSPC), ``None``: no limit."""

    def __init__(self) -> None:
        self.room: int | None = None
        self._write = spool_module._write

    def write(self, descriptor: int, data: bytes | memoryview) -> int:
        if self.room is None:
            return self._write(descriptor, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._write(descriptor, memoryview(data)[: self.room])
        self.room -= written
        return written


def test_a_failed_write_on_a_fake_full_disk_is_cut_back_to_the_last_good_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = _FakeFullDisk()
    monkeypatch.setattr(spool_module, "_write", disk.write)
    directory = tmp_path / RUN.id / "recording"
    spool = BackendSpool(directory, RUN, "recording", fsync_interval=0.0)

    def fill() -> None:
        disk.room = 1001  # some frames and a torn one fit before the disk is full

    def free() -> None:
        disk.room = None

    survivors = _outage_then_recovery(spool, fill, free)
    assert spool.pending == len(survivors)
    assert _steps(_after_crash(directory)) == survivors
    segments = sorted(directory.glob("*.seg"))
    assert len(segments) == 2  # the failed write closed its segment at the last good frame; a new one took the rest
    assert segments[0].stat().st_size == len(MAGIC) + len(encode_records(_metrics(0, 1000))[0])
