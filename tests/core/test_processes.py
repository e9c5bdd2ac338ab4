"""Real processes and real signals: SIGTERM, SIGKILL, crashes, fork, ranks, and replay after them."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.replay import replay
from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_fixtures import hanging


def _wait_for_line(process: subprocess.Popen[str], text: str) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert text in line, (line, process.stderr.read() if process.poll() is not None and process.stderr else "")
    return line


def _replayed(root: Path) -> list[tracelet.Metric]:
    hanging.release()  # the replayed backend is the same plugin, reachable again
    results = replay(root, progress=None)
    assert results and all(not result.left for result in results), results
    records: list[tracelet.Metric] = []
    for result in results:
        records.extend(result.plugin.records)  # type: ignore[attr-defined]
    return records


def test_a_hung_backend_stop_returns_by_its_deadline_and_replay_delivers_its_records_once(
    tracelet_start: Callable[..., Run], tmp_path: Path, tracelet_logs: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tracelet_start(backends=["fixture-hanging", "recording"])
    for step in range(500):
        run.log_metric("x", float(step), step=step)
    started = time.monotonic()
    assert run.stop(timeout=2) is False
    assert 1.5 < time.monotonic() - started < 3
    recording = run.get_plugin("recording")
    assert isinstance(recording, RecordingBackend)
    assert len(recording.metrics) == 500 and recording.status is tracelet.RunStatus.FINISHED
    assert run.stats()["fixture-hanging"].spooled == 500
    # The next start mentions the undelivered spool in one line.
    tracelet_logs.clear()
    tracelet_start(backends=["recording"]).stop()
    mentions = [r.getMessage() for r in tracelet_logs.records if "tracelet replay" in r.getMessage()]
    assert len(mentions) == 1 and "spools=1" in mentions[0], mentions
    # Replay from the command line: progress on stderr, everything sent, then nothing left to send.
    hanging.release()
    command = [sys.executable, "-m", "tracelet.cli", "replay"]
    monkeypatch.setenv("TRACELET_FIXTURE_HANGING_HANG", "0")  # the server is back
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert "100% 500 records" in first.stderr
    assert f"fixture-hanging run {run.id}: 500 records sent, done" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0 and "nothing to replay" in second.stderr
    assert not any(Path(".tracelet/spool").iterdir())


def test_replay_resumes_the_backend_run_and_ends_it_with_the_runs_status(
    tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"retry_attempts": 1, "breaker_cooldown": 60, "retry_base": 0.01}
    run = tracelet_start(backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 10**6}}, **options)
    for step in range(300):
        run.log_metric("x", float(step), step=step)
    run.log_params({"lr": 0.5})
    assert run.stop(timeout=2) is False
    meta = json.loads((tmp_path / ".tracelet/spool" / run.id / "fixture-flaky" / "meta.json").read_text())
    assert meta["backend_run"] == {"id": f"recording-{run.id}", "url": None}
    monkeypatch.setenv("TRACELET_FIXTURE_FLAKY_FAIL_FIRST", "1")  # today's configuration: one failure, retried
    results = replay(tmp_path / ".tracelet/spool", progress=None)
    (result,) = results
    backend = result.plugin
    assert isinstance(backend, RecordingBackend) and backend.resumed
    assert [m.step for m in backend.metrics] == list(range(300)) and backend.params == {"lr": 0.5}
    assert backend.status is tracelet.RunStatus.FINISHED and result.sent == 301
    assert replay(tmp_path / ".tracelet/spool", progress=None) == []


def test_sigkill_after_logging_100k_records_loses_nothing_older_than_the_sync_interval(
    child: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    process = child(
        """
        run = tracelet.start(backends=["fixture-hanging"])
        for step in range(100_000):
            tracelet.log_metric("loss", step * 0.5, step=step)
        print("logged", flush=True)
        time.sleep(600)
        """
    )
    _wait_for_line(process, "logged")
    time.sleep(2.5)  # spool_after (0.5 s) + the router's tick (0.25 s) + fsync interval (1 s), with a margin
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL
    records = _replayed(tmp_path / ".tracelet/spool")
    assert [m.step for m in records] == list(range(100_000))
    assert all(m.value == m.step * 0.5 for m in records)


def test_sigterm_delivers_what_it_can_spools_the_rest_and_chains_to_the_previous_handler(
    child: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    process = child(
        """
        def previous(signum, frame):
            recording = run.get_plugin("recording")
            spooled = run.stats()["fixture-hanging"].spooled
            report = {"metrics": len(recording.metrics), "status": recording.status.value, "stopped": spooled}
            os.write(1, (json.dumps(report) + "\\n").encode())  # not print(): the handler may interrupt a print
            sys.exit(3)

        signal.signal(signal.SIGTERM, previous)
        run = tracelet.start(backends=["fixture-hanging", "recording"], sigterm_grace=1)
        for step in range(20_000):
            tracelet.log_metric("loss", float(step), step=step)
        print("logged", flush=True)
        while True:  # like a training loop, it runs Python code: the handler runs whichever thread took the signal
            time.sleep(0.05)
        """
    )
    _wait_for_line(process, "logged")
    process.send_signal(signal.SIGTERM)
    report = json.loads(_wait_for_line(process, "metrics"))
    assert process.wait(10) == 3  # the previous handler decided how the process ends
    assert report == {"metrics": 20_000, "status": "KILLED", "stopped": 20_000}
    meta = json.loads(next((tmp_path / ".tracelet/spool").glob("*/fixture-hanging/meta.json")).read_text())
    assert meta["status"] == "KILLED"
    assert [m.step for m in _replayed(tmp_path / ".tracelet/spool")] == list(range(20_000))


def test_sigterm_with_the_default_handler_still_terminates_the_process_by_the_signal(
    child: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    process = child(
        """
        run = tracelet.start(backends=["fixture-hanging"], sigterm_grace=0.5)
        for step in range(1000):
            tracelet.log_metric("loss", float(step), step=step)
        print("logged", flush=True)
        while True:  # like a training loop, it runs Python code: the handler runs whichever thread took the signal
            time.sleep(0.05)
        """
    )
    _wait_for_line(process, "logged")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == -signal.SIGTERM
    assert time.monotonic() - started < 3
    assert len(_replayed(tmp_path / ".tracelet/spool")) == 1000


def test_an_uncaught_exception_marks_the_run_failed_in_every_backend(
    child: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    process = child(
        """
        import atexit
        run = tracelet.start(backends=["recording", "fixture-hanging"], stop_timeout=1)
        atexit.register(lambda: print("status", run.get_plugin("recording").status.value, flush=True))
        tracelet.log_metric("loss", 1.0, step=0)
        raise ValueError("diverged")
        """
    )
    assert process.wait(30) == 1
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read().strip() == "status FAILED"
    assert "ValueError: diverged" in process.stderr.read()  # the previous excepthook still printed it
    meta = json.loads(next((tmp_path / ".tracelet/spool").glob("*/fixture-hanging/meta.json")).read_text())
    assert meta["status"] == "FAILED"


def _in_forked_child(step: int) -> tuple[bool, str | None, int]:
    tracelet.log_metric("from-child", 1.0, step=step)  # does nothing in a forked child
    tracelet.log_params({"child": step})
    run = tracelet.active_run()
    threads = [t for t in __import__("threading").enumerate() if t.name.startswith("tracelet-")]
    return tracelet.flush(1), run.id if run else None, len(threads)


def test_a_fork_pool_while_a_run_is_active_neither_deadlocks_nor_creates_runs(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    for step in range(100):
        run.log_metric("parent", float(step), step=step)
    with multiprocessing.get_context("fork").Pool(4) as pool:
        answers = pool.map_async(_in_forked_child, range(16)).get(timeout=60)
    assert answers == [(True, run.id, 0)] * 16  # the parent's run, inert: no thread of its own in the child
    run.log_metric("parent", 100.0, step=100)
    assert run.stop(timeout=10) is True
    recording = run.get_plugin("recording")
    assert isinstance(recording, RecordingBackend)
    assert [m.step for m in recording.metrics] == list(range(101))  # nothing from the children
    assert [hook for hook, _ in recording.calls].count("tracelet_backend_start") == 1


RANK_SCRIPT = """
run = tracelet.start(backends=["recording"], name="ddp")
for step in range(50):
    tracelet.log_metric("loss", float(step), step=step)
tracelet.flush(5)
recording = run.get_plugin("recording") if run.backends else None
print(json.dumps({
    "backends": list(run.backends),
    "name": run.name,
    "metrics": len(recording.metrics) if recording else 0,
    "tags": recording.tags if recording else {},
}), flush=True)
run.stop()
"""


@pytest.mark.parametrize("log_all_ranks", [False, True])
def test_only_rank_zero_logs_unless_every_rank_is_asked_to(
    child: Callable[..., subprocess.Popen[str]], log_all_ranks: bool
) -> None:
    extra = {"TRACELET_LOG_ALL_RANKS": "1"} if log_all_ranks else {}
    processes = [child(RANK_SCRIPT, RANK=str(rank), LOCAL_RANK=str(rank), **extra) for rank in (0, 1)]
    reports = [json.loads(_wait_for_line(process, "backends")) for process in processes]
    assert [process.wait(30) for process in processes] == [0, 0]
    if not log_all_ranks:
        assert reports[0]["backends"] == ["recording"] and reports[0]["metrics"] == 50
        assert reports[1] == {"backends": [], "name": "ddp-rank1", "metrics": 0, "tags": {}}
    else:
        assert [r["name"] for r in reports] == ["ddp", "ddp-rank1"]
        assert [r["metrics"] for r in reports] == [50, 50]
        assert [r["tags"]["tracelet.rank"] for r in reports] == ["0", "1"]
        assert all(r["tags"]["tracelet.node"] for r in reports)


def test_a_rank_that_does_not_log_costs_next_to_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANK", "3")
    run = tracelet.start(backends=["recording"])
    try:
        assert run.backends == () and not [t for t in __import__("threading").enumerate() if t.name.startswith("tracelet-")]
        run.log_metric("x", 1.0)
        run.log_params({"a": 1})
        assert run.flush() is True and run.stats().backends == {}
    finally:
        assert run.stop() is True
    assert logging.getLogger("tracelet") is not None


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, None),
        ({"RANK": "3", "NODE_RANK": "1"}, 3),
        ({"LOCAL_RANK": "1"}, 1),
        ({"SLURM_PROCID": "5"}, 5),
        ({"NODE_RANK": "0", "LOCAL_RANK": "0"}, 0),
        # Lightning's launcher on the second node: only NODE_RANK in its main process
        ({"NODE_RANK": "1"}, 1),
        ({"NODE_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, 3),
        ({"GROUP_RANK": "2", "LOCAL_WORLD_SIZE": "4"}, 8),
    ],
)
def test_global_rank_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: int | None
) -> None:
    from tracelet.ranks import global_rank

    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert global_rank() == expected


def test_stop_run_at_exit_first_stops_the_run_before_handlers_registered_earlier(
    child: Callable[..., subprocess.Popen[str]],
) -> None:
    process = child(
        """
        import atexit
        from tracelet.plugin import stop_run_at_exit_first

        run = tracelet.start(backends=["recording"])
        child_run = run.child("fold")
        child_run.__enter__()  # this thread's active run is the child: its parent's id is the one that is ours
        atexit.register(lambda: print("library handler, run stopped:", run._stopped, flush=True))
        stop_run_at_exit_first("fixture", {run.id}.__contains__)
        stop_run_at_exit_first("fixture", lambda run_id: False)  # once per plugin: this one is not registered
        tracelet.log_metric("loss", 1.0, step=0)
        """
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.splitlines() == ["library handler, run stopped: True"]
