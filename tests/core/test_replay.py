"""``tracelet replay`` against damaged spools and picky backends: nothing blocks the rest, nothing passes in silence.

Spools are real directories written by :class:`BackendSpool` (as a run that
could not deliver leaves them); exit codes and messages come from the real
command in a subprocess; what a backend received is read in-process from
:func:`tracelet.replay.replay`. ``fixture-picky`` (tests/core/plugins) is a
backend that fails on some records every time while it takes the others.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import tracelet
from tracelet.records import Record
from tracelet.replay import replay
from tracelet.spool import MAGIC, BackendSpool, encode_records
from tracelet.testing import RecordingBackend

PROGRESS = re.compile(r": \d+% \d+ records$")
FAST_RETRIES = {"TRACELET_RETRY_BASE": "0.001", "TRACELET_RETRY_CAP": "0.002"}


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml of the repository: only the environment configures
    for name, value in FAST_RETRIES.items():
        monkeypatch.setenv(name, value)


def _metrics(start: int, stop: int) -> list[tracelet.Metric]:
    return [tracelet.Metric("m", float(step), step, 1.0) for step in range(start, stop)]


def _spool(
    root: Path,
    backend: str,
    records: list[tracelet.Metric] = (),  # type: ignore[assignment]
    rejected: list[list[Record]] = (),  # type: ignore[assignment]
) -> Path:
    """The spool a finished run leaves for ``backend``: ``records`` pending, each of ``rejected`` a refused batch."""
    run = tracelet.RunInfo(os.urandom(16).hex(), "p", "n", time.time(), "0", (backend,), (backend,))
    spool = BackendSpool(root / run.id / backend, run, backend, fsync_interval=0.0)
    for batch in rejected:
        spool.reject(batch)
    if records:
        frames, _ = encode_records(records)
        spool.append(frames, len(records))
    assert spool.close(tracelet.RunStatus.FINISHED) is True
    return spool.directory


def _replay_command(root: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "replay", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **environment},
    )


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """Stderr's report lines, without the progress bars (``recording n: 40% 200 records``)."""
    return [line for line in done.stderr.splitlines() if line and not PROGRESS.search(line)]


def _left_on_disk(directory: Path) -> list[Record]:
    """Records still in a spool directory (read from a copy: the directory stays as it is)."""
    copy = Path(tempfile.mkdtemp(prefix="tracelet-left-"))
    try:
        shutil.copytree(directory, copy / "spool", ignore=shutil.ignore_patterns("rejected"))
        spool = BackendSpool.open_existing(copy / "spool", tracelet.RunInfo("", "", "", 0.0, "", (), ()), "x")
        found: list[Record] = []
        while True:
            records, segment_id, ends = spool.read(1000)
            if not records:
                return found
            found.extend(records)
            spool.ack(segment_id, ends[-1], len(records))
    finally:
        shutil.rmtree(copy)


def _steps(records: list[Record]) -> list[int]:
    return [record.step for record in records]  # type: ignore[union-attr]


# --- damaged spool directories -------------------------------------------------------------------------------


def test_a_bad_spool_directory_is_reported_and_skipped_and_the_healthy_ones_are_replayed(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    garbage = _spool(root, "recording", _metrics(0, 10))
    (garbage / "meta.json").write_text("{not json", "utf-8")
    future = _spool(root, "recording", _metrics(0, 10))
    meta = json.loads((future / "meta.json").read_text("utf-8"))
    (future / "meta.json").write_text(json.dumps(dict(meta, version=2)), "utf-8")
    stray = _spool(root, "recording", _metrics(0, 10))
    (stray / "notes.seg").write_bytes(b"mine")
    stray_rejected = _spool(root, "recording", _metrics(0, 10), rejected=[_metrics(10, 11)])
    (stray_rejected / "rejected" / "7.seg").write_bytes(MAGIC)
    healthy = _spool(root, "recording", _metrics(0, 500))
    for age, directory in enumerate((garbage, future, stray, stray_rejected)):  # older: replay comes to them first
        os.utime(directory, (1_000_000 + age, 1_000_000 + age))
    done = _replay_command(root)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = _lines(done)
    assert f"recording run {healthy.parent.name}: 500 records sent, done" in lines
    assert (
        f"{garbage}: skipped: meta.json is unreadable: JSONDecodeError: "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    ) in lines
    assert f"{future}: skipped: meta.json: spool format version 2; this tracelet-core reads version 1" in lines
    assert f"{stray}: skipped: notes.seg is not a spool segment (named <20 digits>.seg)" in lines
    assert f"{stray_rejected}: skipped: rejected/7.seg is not a spool segment (named <20 digits>.seg)" in lines
    assert len(lines) == 5
    assert not healthy.exists()
    for directory in (garbage, future, stray, stray_rejected):  # left as they were, for a person to look at
        assert len(list(directory.glob("0*.seg"))) == 1


def test_replay_says_what_a_torn_or_corrupt_region_cost_and_exits_non_zero(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    torn = _spool(root, "recording", _metrics(0, 100))
    corrupt = _spool(root, "recording", _metrics(0, 100))
    _, ends = encode_records(_metrics(0, 100))
    (torn_segment,) = torn.glob("*.seg")
    torn_segment.write_bytes(torn_segment.read_bytes()[: len(MAGIC) + ends[98] + 5])  # a crash mid-write of the last
    (corrupt_segment,) = corrupt.glob("*.seg")
    data = bytearray(corrupt_segment.read_bytes())
    data[len(MAGIC) + ends[49] + 12] ^= 0xFF  # a flipped bit in record 50's payload
    corrupt_segment.write_bytes(bytes(data))
    done = _replay_command(root)
    assert done.returncode == 1, done.stderr
    lines = _lines(done)
    start, end = len(MAGIC) + ends[98], len(MAGIC) + ends[98] + 5
    assert f"recording run {torn.parent.name}: 99 records sent, done" in lines
    assert f"recording run {torn.parent.name}: skipped bytes {start}-{end} of {torn_segment}: torn frame (1 record lost)" in lines
    start, end = len(MAGIC) + ends[49], len(MAGIC) + ends[99]
    assert f"recording run {corrupt.parent.name}: 50 records sent, done" in lines
    assert (
        f"recording run {corrupt.parent.name}: skipped bytes {start}-{end} of {corrupt_segment}: "
        "checksum mismatch (50 records lost)"
    ) in lines
    assert not torn.exists() and not corrupt.exists()  # what could be read was delivered; nothing more to do


# --- refused records ---------------------------------------------------------------------------------------------


def test_a_refused_rejected_record_stays_in_rejected_and_never_blocks_the_pending_ones(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    missing = tmp_path / "model.pt"
    directory = _spool(
        root,
        "fixture-picky",
        _metrics(0, 2000),
        rejected=[[tracelet.Artifact(str(missing), "model.pt")], [tracelet.Param("lr", 0.1)]],
    )
    done = _replay_command(root)
    assert done.returncode == 1, done.stderr
    run_id = directory.parent.name
    assert _lines(done)[-1:] == [
        f"fixture-picky run {run_id}: 2001 records sent, 1 refused, kept in {directory / 'rejected'}: "
        f"artifact 'model.pt' (PermanentError: fixture-picky: {missing} does not exist)"
    ]
    assert _left_on_disk(directory / "rejected") == [tracelet.Artifact(str(missing), "model.pt")]
    assert not list(directory.glob("*.seg")) and (directory / "meta.json").exists()
    # Once the cause is fixed, the next replay delivers it and the directory goes.
    missing.write_text("weights")
    again = _replay_command(root)
    assert again.returncode == 0, again.stderr
    assert _lines(again)[-1:] == [f"fixture-picky run {run_id}: 1 records sent, done"]
    assert not directory.exists()


def test_a_poison_record_is_isolated_named_once_and_the_rest_is_delivered_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    directory = _spool(root, "fixture-picky", _metrics(0, 1000))
    poison = (37, 537, 538)  # fail every time, with an error that looks transient; two in one batch
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_POISON_STEPS", ",".join(map(str, poison)))
    (result,) = replay(root, progress=None)
    backend = result.plugin
    assert isinstance(backend, RecordingBackend)
    assert _steps(backend.metrics) == [step for step in range(1000) if step not in poison]  # in order, once each
    assert (result.sent, result.refused, result.left, result.error) == (997, 3, True, None)
    assert backend.status is tracelet.RunStatus.FINISHED
    assert _steps(_left_on_disk(directory / "rejected")) == list(poison)
    assert not list(directory.glob("*.seg"))
    # The backend can take them now: the next replay sends only what was refused, and the directory goes.
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_POISON_STEPS", "")
    (result,) = replay(root, progress=None)
    assert _steps(result.plugin.records) == list(poison)  # type: ignore[attr-defined]
    assert (result.sent, result.refused, result.left) == (3, 0, False) and not directory.exists()
    # From the command line: each refused record named once, with the reason.
    other = tmp_path / "other"
    directory = _spool(other, "fixture-picky", _metrics(0, 100))
    done = _replay_command(other, TRACELET_FIXTURE_PICKY_POISON_STEPS="37,38")
    assert done.returncode == 1
    assert _lines(done)[-1:] == [
        f"fixture-picky run {directory.parent.name}: 98 records sent, 2 refused, kept in {directory / 'rejected'}: "
        "metric 'm' step 37 (ConnectionError: fixture-picky: cannot store step 37), "
        "metric 'm' step 38 (ConnectionError: fixture-picky: cannot store step 38)"
    ]


def test_a_backend_failing_every_record_is_down_replay_stops_and_leaves_the_spool_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "spool"
    directory = _spool(root, "fixture-picky", _metrics(0, 200))
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_DOWN", "1")
    (result,) = replay(root, progress=None)
    backend = result.plugin
    assert isinstance(backend, RecordingBackend)
    assert (result.sent, result.refused, result.left) == (0, 0, True)
    assert result.error == (
        "backend down: 8 records in a row failed, each sent alone: ConnectionError: fixture-picky: connection refused"
    )
    # Down, not poison: told apart in a few calls (5 attempts, then halves of the 50-record batch down to
    # single records, until 8 in a row failed alone), where sending every record alone would take 99.
    assert backend.attempts == 23
    assert not (directory / "rejected").exists()
    assert _steps(_left_on_disk(directory)) == list(range(200))
    assert json.loads((directory / "meta.json").read_text("utf-8"))["status"] == "FINISHED"  # still the run's status
    done = _replay_command(root, TRACELET_FIXTURE_PICKY_DOWN="1")
    assert done.returncode == 1 and "left in the spool: backend down: 8 records in a row failed" in done.stderr
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_DOWN", "0")
    (result,) = replay(root, progress=None)
    assert _steps(result.plugin.records) == list(range(200))  # type: ignore[attr-defined]
    assert result.plugin.status is tracelet.RunStatus.FINISHED  # type: ignore[attr-defined]
    assert not directory.exists()


def test_a_stop_keeps_every_record_after_the_first_one_in_doubt_in_the_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Steps 0-2 and 4-8 fail alone with a transient-looking error and nothing is taken: the backend is down.
    # Step 3 was refused for good meanwhile, but it comes after step 0, which stays: so must step 3, in order.
    root = tmp_path / "spool"
    directory = _spool(root, "fixture-picky", _metrics(0, 20))
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_POISON_STEPS", "0,1,2,4,5,6,7,8")
    monkeypatch.setenv("TRACELET_FIXTURE_PICKY_REFUSE_STEPS", "3")
    (result,) = replay(root, progress=None)
    assert (result.sent, result.refused, result.left) == (0, 0, True)
    assert result.error == (
        "backend down: 8 records in a row failed, each sent alone: ConnectionError: fixture-picky: cannot store step 8"
    )
    assert not (directory / "rejected").exists()
    assert _steps(_left_on_disk(directory)) == list(range(20))
