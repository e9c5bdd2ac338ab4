"""Offline runs and ``tracelet sync``; stable run ids and resume (docs/offline-and-resume.md).

Real processes, real signals, real spool files; what a backend received is
read from the recording backend of an in-process :func:`tracelet.replay.sync`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.offline import materialise
from tracelet.replay import sync
from tracelet.run import Run
from tracelet.runindex import RunIndex
from tracelet.testing import RecordingBackend


def _received(results: list[tracelet.replay.ReplayResult]) -> list[tracelet.Metric]:
    metrics: list[tracelet.Metric] = []
    for result in results:
        if isinstance(result.plugin, RecordingBackend):
            metrics.extend(result.plugin.metrics)
    return metrics


# --- offline ----------------------------------------------------------------------------------------------------


def test_an_offline_run_starts_no_backend_and_keeps_every_record_in_its_spool(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    run = tracelet_start(backends=["recording"], mode="offline")
    assert run.backends == ("recording",)
    for step in range(1000):
        run.log_metric("loss", step / 10, step=step)
    run.log_params({"lr": 0.1})
    assert run.flush(10) is True
    assert run.stats()["offline"].spooled == 1001
    with pytest.raises(KeyError):
        run.get_plugin("recording")  # never created
    assert run.stop() is True
    offline = tmp_path / ".tracelet/spool" / run.id / "@offline"
    meta = json.loads((offline / "meta.json").read_text())
    assert meta["run"]["backends"] == ["recording"] and meta["status"] == "FINISHED"
    assert not (tmp_path / ".tracelet/spool" / run.id / "recording").exists()

    results = sync(tmp_path / ".tracelet/spool", progress=None)
    (result,) = results
    assert result.ok and result.sent == 1001 and result.backend == "recording"
    backend = result.plugin
    assert isinstance(backend, RecordingBackend)
    assert [(m.step, m.value) for m in backend.metrics] == [(step, step / 10) for step in range(1000)]
    assert backend.params == {"lr": 0.1} and backend.status is tracelet.RunStatus.FINISHED
    assert offline.is_dir()  # kept: the same run can be synced to another backend later


def test_sync_after_sigkill_delivers_every_point_older_than_the_window_once_and_a_second_sync_sends_nothing(
    child: Callable[..., subprocess.Popen[str]], tmp_path: Path
) -> None:
    process = child(
        """
        run = tracelet.start(backends=["recording"], mode="offline")
        step = 0
        while True:
            tracelet.log_metric("loss", step * 0.5, step=step)
            if step % 200 == 0:
                print(step, flush=True)
            step += 1
            time.sleep(0.0005)
        """
    )
    assert process.stdout is not None
    printed = 0
    while printed < 4000:
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else ""
        printed = int(line)
    time.sleep(1.0)  # the documented window: batch_linger (0.1 s) + one router pass, with a wide margin
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(10) == -signal.SIGKILL

    root = tmp_path / ".tracelet/spool"
    first = sync(root, progress=None)
    metrics = _received(first)
    assert all(result.ok for result in first), [result.report() for result in first]
    steps = [m.step for m in metrics]
    assert steps == list(range(len(steps))) and len(steps) > printed  # in order, once, nothing older lost
    assert all(m.value == m.step * 0.5 for m in metrics)
    (result,) = first
    assert result.plugin.status is tracelet.RunStatus.KILLED  # type: ignore[attr-defined]

    second = sync(root, progress=None)
    assert _received(second) == []
    assert [line for result in second for line in result.report()] == [
        f"recording run {result.run_id}: already synced, nothing to send"
    ]
    done = subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "sync", str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"recording run {result.run_id}: already synced, nothing to send"]


def test_sync_of_an_offline_run_with_no_backend_asks_for_one_and_backend_names_one(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    run = tracelet_start(backends=[], mode="offline")
    run.log_metric("x", 1.0, step=0)
    assert run.stop() is True
    root = tmp_path / ".tracelet/spool"
    (result,) = sync(root, progress=None)
    assert result.report() == [
        f"offline run {run.id}: 0 records sent, left in the spool: the offline run names no backend: pass --backend NAME"
    ]
    assert not result.ok
    (result,) = sync(root / run.id, backends=["recording"], progress=None)  # a run's directory works too
    assert result.ok and [m.step for m in result.plugin.metrics] == [0]  # type: ignore[attr-defined]
    assert json.loads((root / run.id / "@offline/synced.json").read_text()) == {
        "recording": {"backend_run": {"id": f"recording-{run.id}", "url": None}, "segments": [10**15]}
    }


def test_a_resumed_offline_run_appends_and_sync_sends_only_the_new_part_to_the_same_backend_run(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    root = tmp_path / ".tracelet/spool"
    first = tracelet_start(backends=["recording"], mode="offline", run_id="air-gapped-1")
    for step in range(100):
        first.log_metric("x", float(step), step=step)
    first.stop()
    (result,) = sync(root, progress=None)
    assert [m.step for m in result.plugin.metrics] == list(range(100))  # type: ignore[attr-defined]

    second = tracelet_start(backends=["recording"], mode="offline", run_id="air-gapped-1")
    for step in range(100, 150):
        second.log_metric("x", float(step), step=step)
    second.stop()
    (result,) = sync(root, progress=None)
    backend = result.plugin
    assert isinstance(backend, RecordingBackend) and backend.resumed
    assert [m.step for m in backend.metrics] == list(range(100, 150))


def test_an_interrupted_sync_delivers_its_copy_then_the_rest_each_record_once(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    root = tmp_path / ".tracelet/spool"
    first = tracelet_start(backends=["recording"], mode="offline", run_id="interrupted")
    for step in range(100):
        first.log_metric("x", float(step), step=step)
    first.stop()
    offline = root / "interrupted/@offline"
    copy = materialise(offline, "recording")  # a sync that died right after handing the segments over
    assert copy == root / "interrupted/recording@sync"
    assert json.loads((offline / "synced.json").read_text())["recording"]["segments"] == [10**15]
    second = tracelet_start(backends=["recording"], mode="offline", run_id="interrupted")  # more, meanwhile
    for step in range(100, 120):
        second.log_metric("x", float(step), step=step)
    second.stop()

    results = sync(root, progress=None)
    assert [result.sent for result in results] == [100, 20]  # the interrupted copy, then what it lacked
    assert [m.step for m in _received(results)] == list(range(120))
    assert [result.plugin.resumed for result in results] == [False, True]  # type: ignore[attr-defined]
    assert sorted(path.name for path in (root / "interrupted").iterdir()) == ["@offline"]
    assert [line for result in sync(root, progress=None) for line in result.report()] == [
        "recording run interrupted: already synced, nothing to send"
    ]


# --- resume ---------------------------------------------------------------------------------------------------------


def test_resume_must_with_an_unknown_id_names_the_id_and_where_it_looked(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    with pytest.raises(tracelet.ConfigError) as raised:
        tracelet_start(backends=["recording"], run_id="job-42", resume="must")
    index = tmp_path / ".tracelet/spool/.runs/job-42.json"
    assert str(raised.value) == (
        f"resume='must': run_id 'job-42' is not in the run index (no {index}); "
        "start it with resume='allow', or set spool_dir to where its first run kept its spool"
    )
    assert tracelet.active_run() is None
    run = tracelet_start(backends=["recording"], run_id="job-42")  # allow (the default) starts it, under that id
    assert run.id == "job-42"
    assert run.get_plugin("recording").resumed is False  # type: ignore[attr-defined]
    run.stop()
    assert json.loads(index.read_text())["backends"] == {"recording": {"id": "recording-job-42", "url": None}}


def test_resume_never_with_a_known_id_is_an_error_and_allow_attaches_to_the_same_backend_run(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    first = tracelet_start(backends=["recording"], run_id="job-7", name="seven")
    first.log_metric("x", 0.0, step=0)
    first.stop()
    index = tmp_path / ".tracelet/spool/.runs/job-7.json"
    with pytest.raises(tracelet.ConfigError) as raised:
        tracelet_start(backends=["recording"], run_id="job-7", resume="never")
    assert str(raised.value) == (
        f"resume='never': run_id 'job-7' already exists in the run index ({index}); "
        "choose a new run_id, or use resume='allow' to continue that run"
    )
    second = tracelet_start(backends=["recording"], run_id="job-7", resume="must")
    backend = second.get_plugin("recording")
    assert second.name == "seven" and second.info.resume == {"recording": "recording-job-7"}
    second.stop()
    assert isinstance(backend, RecordingBackend) and backend.resumed


def test_a_run_id_in_use_by_a_live_run_cannot_be_claimed_and_a_bad_id_is_refused(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    run = tracelet_start(backends=["recording"], run_id="busy")
    lock = tmp_path / ".tracelet/spool/.runs/busy.lock"
    with pytest.raises(tracelet.ConfigError) as raised:
        RunIndex.claim(tmp_path / ".tracelet/spool", "busy")
    assert str(raised.value) == (
        f"run_id 'busy' is in use by another running process (it holds {lock}); one process at a time can log to a run"
    )
    run.stop()
    RunIndex.claim(tmp_path / ".tracelet/spool", "busy").release()  # free once the run stopped
    with pytest.raises(tracelet.ConfigError, match=r"run_id '\.\./x': use 1 to 128 letters"):
        tracelet_start(backends=["recording"], run_id="../x")
    with pytest.raises(tracelet.ConfigError, match=r"resume='must' needs a run_id"):
        tracelet_start(backends=["recording"], resume="must")


def test_a_resumed_run_delivers_what_its_previous_process_left_first_then_goes_on(
    tracelet_start: Callable[..., Run], tmp_path: Path
) -> None:
    options = {"retry_attempts": 1, "breaker_cooldown": 60, "retry_base": 0.01, "run_id": "preempted"}
    first = tracelet_start(backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 10**6}}, **options)
    for step in range(300):
        first.log_metric("x", float(step), step=step)
    assert first.stop(timeout=2) is False  # the backend was down: all 300 are in the run's spool
    assert (tmp_path / ".tracelet/spool/preempted/fixture-flaky/meta.json").exists()

    second = tracelet_start(backends=["fixture-flaky"], config={"fixture-flaky": {"fail_first": 0}}, **options)
    for step in range(300, 400):
        second.log_metric("x", float(step), step=step)
    assert second.stop(timeout=20) is True
    backend = second.get_plugin("fixture-flaky")
    assert isinstance(backend, RecordingBackend) and backend.resumed
    assert [m.step for m in backend.metrics] == list(range(400))
    assert not (tmp_path / ".tracelet/spool/preempted").exists()  # delivered: the spool is gone


def test_environment_variables_set_mode_run_id_and_resume(
    tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACELET_RUN_ID", "slurm-1234")
    monkeypatch.setenv("TRACELET_MODE", "offline")
    monkeypatch.setenv("TRACELET_RESUME", "never")
    run = tracelet_start(backends=["recording"])
    assert run.id == "slurm-1234" and "offline" in run.stats().backends
    run.stop()
    with pytest.raises(tracelet.ConfigError, match="resume='never': run_id 'slurm-1234' already exists"):
        tracelet_start(backends=["recording"])
    monkeypatch.setenv("TRACELET_MODE", "sideways")
    with pytest.raises(tracelet.ConfigError, match="mode"):
        tracelet_start(backends=["recording"])
