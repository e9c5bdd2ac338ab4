"""``tracelet doctor`` and the MLflow backend's check against a real ``mlflow server`` and a real sqlite store.

A server that answers, one stopped (its port closed: connection refused), and
one that accepts connections but never answers (a listening socket nobody
serves): exit codes, the JSON fields, the reason shown, and the time taken.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import tracelet
from tracelet.doctor import GRACE, diagnose
from tracelet_mlflow import MlflowBackend
from tracelet_mlflow.settings import MlflowSettings


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACELET_BACKENDS", "mlflow")


def _doctor(*arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "doctor", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **environment},
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts TCP connections (the kernel's backlog) and never sends a byte: a hung server."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_doctor_against_a_healthy_server_exits_0(server_uri: str) -> None:
    done = _doctor("--json", TRACELET_MLFLOW_TRACKING_URI=server_uri)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["healthy"] is True and report["problems"] == []
    (mlflow,) = report["backends"]
    assert (mlflow["name"], mlflow["status"], mlflow["detail"]) == ("mlflow", "ok", f"{server_uri}/health: HTTP 200")
    assert 0 < mlflow["seconds"] < 5
    settings = {setting["key"]: setting for setting in mlflow["settings"]}
    assert settings["mlflow.tracking_uri"] == {
        "key": "mlflow.tracking_uri",
        "value": server_uri,
        "source": "TRACELET_MLFLOW_TRACKING_URI (environment)",
    }
    assert settings["mlflow.experiment"] == {"key": "mlflow.experiment", "value": None, "source": "default"}
    text = _doctor(TRACELET_MLFLOW_TRACKING_URI=server_uri, COLUMNS="200")
    assert text.returncode == 0
    assert any(
        line.startswith("mlflow: ok (") and line.endswith(f"s): {server_uri}/health: HTTP 200")
        for line in text.stdout.splitlines()
    )
    assert text.stdout.splitlines()[-1] == "healthy: a start() here can deliver to every backend it uses"


def test_credentials_in_the_tracking_uri_are_neither_sent_in_the_url_nor_shown(server_uri: str) -> None:
    with_password = server_uri.replace("http://", "http://alice:hunter2@")
    done = _doctor("--json", TRACELET_MLFLOW_TRACKING_URI=with_password)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hunter2" not in done.stdout
    assert json.loads(done.stdout)["backends"][0]["detail"] == f"{server_uri}/health: HTTP 200"


def test_doctor_against_a_stopped_server_exits_1_with_the_reason_and_within_the_timeout() -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    done = _doctor("--json", "--timeout", "3", TRACELET_MLFLOW_TRACKING_URI=uri)
    elapsed = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    (mlflow,) = report["backends"]
    assert mlflow["status"] == "failed" and mlflow["healthy"] is False
    assert mlflow["detail"] == f"ConnectionError: {uri}/health: connection refused"
    assert report["problems"] == [f"backend mlflow: ConnectionError: {uri}/health: connection refused"]
    assert elapsed < 3 + GRACE + 20  # python's start and plugin discovery on a busy 2-core machine
    text = _doctor("--timeout", "3", TRACELET_MLFLOW_TRACKING_URI=uri, COLUMNS="200")
    assert text.returncode == 1
    assert text.stdout.splitlines()[-2:] == ["unhealthy:", f"  backend mlflow: ConnectionError: {uri}/health: connection refused"]


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACELET_MLFLOW_TRACKING_URI", silent_server)
    started = time.monotonic()
    report = diagnose(timeout=2.0)
    elapsed = time.monotonic() - started
    (mlflow,) = report.backends
    assert (mlflow.status, mlflow.detail) == ("failed", f"ConnectionError: {silent_server}/health: timed out")
    assert 2.0 <= elapsed < 2.0 + GRACE, elapsed
    assert not report.healthy


def test_the_check_queries_a_sqlite_store_and_accepts_one_not_created_yet(tmp_path: Path) -> None:
    database = tmp_path / "store" / "mlflow.db"
    database.parent.mkdir()
    uri = f"sqlite:///{database}"
    check = MlflowBackend(MlflowSettings(tracking_uri=uri)).tracelet_backend_check
    assert check(timeout=5) == f"{uri}: no database yet; MLflow creates it in {database.parent}"
    run = tracelet.start(backends=["mlflow"], project="doctor-check", config={"mlflow": {"tracking_uri": uri}})
    run.log_metric("loss", 0.5, step=1)
    assert run.stop(timeout=60) is True
    assert check(timeout=5) == f"{uri}: 2 experiments"  # MLflow's "Default" and the run's
    database.write_bytes(b"not a database, " * 100)
    with pytest.raises(ConnectionError) as raised:
        check(timeout=5)
    assert str(raised.value) == f"{uri}: not a usable MLflow database: file is not a database"
    missing = MlflowBackend(MlflowSettings(tracking_uri=f"sqlite:///{tmp_path}/no/such/dir/mlflow.db")).tracelet_backend_check
    with pytest.raises(PermissionError) as refused:
        missing(timeout=5)
    assert str(refused.value) == (
        f"sqlite:///{tmp_path}/no/such/dir/mlflow.db: the database does not exist and "
        f"{tmp_path}/no/such/dir is not a writable directory"
    )
