"""Fixtures for the MLflow backend's tests: real MLflow stores, no mocks.

- ``sqlite_uri``: one sqlite store for the session (creating MLflow's tables
  takes seconds, so tests share it and keep apart by experiment and run).
- ``server_uri``: a real ``mlflow server`` on 127.0.0.1, one per session,
  stopped with its whole process group.
- ``store_uri``: both, for the tests that must hold on either store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracelet
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend

_SERVER_START_TIMEOUT = 90.0


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MLflow writes under ``~``: point HOME at a temp dir and keep telemetry off for the whole session."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        patch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
        yield home


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite-store')}/mlflow.db"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"mlflow server not healthy after {_SERVER_START_TIMEOUT} s:\n{log.read_text(errors='replace')[-4000:]}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it runs ~9 processes), SIGKILL what is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@pytest.fixture(scope="session")
def server_uri(tmp_path_factory: pytest.TempPathFactory, _isolated_home: Path) -> Iterator[str]:
    """A real ``mlflow server`` (sqlite backend store, temp artifact destination), one worker."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = root / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",  # with 4 workers each kept-alive request takes ~44 ms
        "--backend-store-uri", f"sqlite:///{root}/server.db",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        _stop_group(process)


@pytest.fixture(params=["sqlite", "server"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """Each test using it runs against the sqlite store and against the server."""
    return str(request.getfixturevalue(f"{request.param}_uri"))


@pytest.fixture
def start_mlflow(tracelet_start: Callable[..., Run], request: pytest.FixtureRequest) -> Callable[..., Run]:
    """Start an isolated run delivering to MLflow only; ``uri`` and ``mlflow`` settings as keywords.

    The project (MLflow experiment) defaults to the test's name, so runs of
    different tests sharing a store never meet.
    """

    def start(uri: str, project: str | None = None, **mlflow_settings: Any) -> Run:
        project = project or request.node.name
        return tracelet_start(project=project, backends=["mlflow"], config={"mlflow": {"tracking_uri": uri, **mlflow_settings}})

    return start


def _finish(run: Run, status: tracelet.RunStatus | str = tracelet.RunStatus.FINISHED) -> MlflowBackend:
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    assert run.stop(status, timeout=60), run.stats()["mlflow"]
    assert backend.run_id is not None
    return backend


@pytest.fixture
def finish() -> Callable[..., MlflowBackend]:
    """``finish(run, status=FINISHED)``: stop the run, assert all of it reached MLflow, return its backend."""
    return _finish
