"""Core's reliability layer seen from AIM: SIGKILL -> replay, SIGTERM -> KILLED, a server stopped mid-run -> replay.

Real processes and a real ``aim server`` that the test stops and restarts on the
same port and repository; everything is read back through ``aim.Repo``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import AimServer, free_port, read_aim_run, stop_group

from tracelet.records import RunStatus
from tracelet.run import Run
from tracelet_aim import AimBackend

_TRACELET_CLI = Path(sys.executable).with_name("tracelet")


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Tracelet settings (the tests pass their own), strict mode on."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    return kept | {"TRACELET_STRICT": "1", "TRACELET_PLUGINS": "aim"} | extra


def test_sigterm_ends_the_aim_run_killed_with_every_point(tmp_path: Path) -> None:
    half = 500
    repo = tmp_path / "repo"
    script = Path(__file__).with_name("sigterm_script.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(repo), str(half)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_clean_environment(),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n", process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGTERM, stderr

    import aim

    (run_hash,) = [run.hash for run in aim.Repo.from_path(str(repo)).iter_runs()]
    stored = read_aim_run(repo, run_hash)
    assert stored.status == "KILLED"
    assert [point[:2] for point in stored.metrics["train/loss"]] == [(step, 1.0 / (step + 1)) for step in range(2 * half)]
    assert stored.params == {"phase": "second"}
    assert not (tmp_path / ".tracelet" / "spool").exists() or not any((tmp_path / ".tracelet" / "spool").iterdir())


def test_sigkill_then_replay_delivers_every_point_older_than_the_window(tmp_path: Path) -> None:
    """A real process SIGKILLed with AIM behind it, then the real ``tracelet replay`` CLI, then ``aim.Repo``.

    Replay resends the batch AIM was storing at the kill (delivered, not yet acknowledged in the spool);
    the backend recognises the points it can read back on resume (step, value, the record's own timestamp)
    and skips them. When AIM had not made all of the killed process's last writes readable, some copies
    land: the test then checks every other property and ends as xfail naming the resent steps.
    """
    points = 50_000  # ~5 s of AIM's ~100 µs a point: most of them are in the spool at the kill
    settle = 3.0  # docs/reliability.md's window: spool_after (0.05 s here) + 0.25 s + spool_fsync_interval (1 s)
    repo = tmp_path / "repo"
    script = Path(__file__).with_name("crash_script.py")
    process = subprocess.Popen(
        [sys.executable, str(script), str(repo), str(points), str(settle)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_clean_environment(),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "logged\n", process.stderr.read() if process.stderr else ""
        report = json.loads(process.stdout.readline())
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    # The kill finds records in AIM and records in the spool: both halves of the guarantee are exercised.
    assert report["delivered"] > 0 and report["spooled"] > 0, report

    spool = tmp_path / ".tracelet" / "spool"
    environment = _clean_environment(TRACELET_AIM_REPO=str(repo))
    command = [str(_TRACELET_CLI), "replay", str(spool)]
    started = time.monotonic()
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment)
    assert first.returncode == 0, first.stderr
    assert " records sent, done" in first.stderr, first.stderr
    assert time.monotonic() - started < 60
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment)
    assert second.returncode == 0 and "nothing to replay" in second.stderr, second.stderr

    stored = read_aim_run(repo, report["hash"])
    assert stored.status == "KILLED"  # a process that died without a word: replay ends its run KILLED
    assert stored.params == {"lr": "0.1"}
    # Delivery is at least once (docs/reliability.md): the batch AIM was storing at the kill is in AIM and,
    # unacknowledged, in the spool; replay sends it again. The resumed backend skips the points it can read
    # back as stored (step, value, the record's timestamp); a copy that still lands is the same point.
    copies = Counter(stored.metrics["train/loss"])
    assert [point[:2] for point in sorted(copies)] == [(step, 1.0 / (step + 1)) for step in range(points)]
    assert set(copies.values()) <= {1, 2}
    resent = sorted(point[0] for point, count in copies.items() if count == 2)
    assert not resent or resent == list(range(resent[0], resent[0] + len(resent)))  # one run of consecutive steps
    if resent:
        pytest.xfail(
            f"exactly once not met this time: replay resent the batch in flight at the kill (steps {resent[0]}-"
            f"{resent[-1]}) and the resumed run could not read all of those points back as stored"
        )


@pytest.fixture
def restartable_server(tmp_path: Path) -> Iterator[AimServer]:
    """A real ``aim server`` the test can stop and start again (same port, same repository)."""
    repo = tmp_path / "server" / "repo"
    repo.mkdir(parents=True)
    server = AimServer(f"aim://127.0.0.1:{free_port()}", repo, 0)
    server.port = int(server.uri.rsplit(":", 1)[1])
    server.start()
    try:
        yield server
    finally:
        if server.processes[-1].poll() is None:
            from aim.ext.cleanup import AutoClean

            AutoClean._cleanup()
        for process in server.processes:
            stop_group(process)


def test_server_stopped_mid_run_then_replay_delivers_every_point(
    restartable_server: AimServer, tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = restartable_server
    monkeypatch.setenv("TRACELET_AIM_REPO", server.uri)
    monkeypatch.setenv("TRACELET_AIM_SERVER_TIMEOUT", "2")
    run = tracelet_start(project="replay", backends=["aim"], retry_attempts=1, breaker_cooldown=600)
    for step in range(100):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_params({"lr": 0.1})
    assert run.flush(timeout=60)
    backend = run.get_plugin("aim")
    assert isinstance(backend, AimBackend)
    run_hash = backend.run_hash
    assert run_hash is not None

    server.stop()
    for step in range(100, 300):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_params({"lr": 0.2})
    run.set_tags({"phase": "offline"})
    assert not run.stop(RunStatus.KILLED, timeout=10)  # the server does not answer past the deadline: spooled
    stats = run.stats()["aim"]
    assert stats.spooled > 0, stats
    spool = tmp_path / ".tracelet" / "spool"
    assert [path.name for path in spool.iterdir()] == [run.id]

    server.start()
    environment = _clean_environment(TRACELET_AIM_REPO=server.uri)
    replayed = subprocess.run(
        [str(_TRACELET_CLI), "replay", str(spool)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"aim run {run.id}: {stats.spooled} records sent, done" in replayed.stderr

    stored = read_aim_run(server.repo, run_hash, index=True)
    assert stored.status == "KILLED"
    assert [point[:2] for point in stored.metrics["loss"]] == [(step, 1.0 / (step + 1)) for step in range(300)]
    assert stored.params == {"lr": "0.2"}
    assert stored.tags["phase"] == "offline"
    assert not (spool / run.id).exists()
