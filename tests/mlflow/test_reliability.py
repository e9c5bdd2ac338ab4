"""Core's reliability layer seen from MLflow: SIGTERM -> KILLED, spool + ``tracelet replay`` -> the same run.

Real processes and a real ``mlflow server`` that the test stops and restarts on
the same port and store; everything is read back with ``MlflowClient``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import _free_port, _stop_group, _wait_healthy
from mlflow import MlflowClient

from tracelet.records import RunStatus
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend

Start = Callable[..., Run]
_TRACELET_CLI = Path(sys.executable).with_name("tracelet")


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Tracelet settings (the tests pass their own), strict mode on."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    return kept | {"TRACELET_STRICT": "1"} | extra


def test_sigterm_ends_the_mlflow_run_killed_with_every_point(sqlite_uri: str, tmp_path: Path) -> None:
    half = 500
    script = Path(__file__).with_name("sigterm_script.py")
    process = subprocess.Popen(
        [sys.executable, str(script), sqlite_uri, "sigterm", str(half)],
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
    # Tracelet's handler ends the run, then the default handler kills the process as without it.
    assert process.returncode == -signal.SIGTERM, stderr

    client = MlflowClient(sqlite_uri)
    (stored,) = client.search_runs([client.get_experiment_by_name("sigterm").experiment_id])
    assert stored.info.status == "KILLED"
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(step, 1.0 / (step + 1)) for step in range(2 * half)]
    assert stored.data.params == {"phase": "second"}
    # Delivered within the grace period, not spooled: nothing is left for replay.
    assert not (tmp_path / ".tracelet" / "spool").exists() or not any((tmp_path / ".tracelet" / "spool").iterdir())


@pytest.fixture
def restartable_server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """``(url, stop, start)``: a real ``mlflow server`` the test can stop and start again (same port, same store)."""
    root = tmp_path / "server"
    root.mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root}/server.db",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        log = root / f"server-{len(processes)}.log"
        with log.open("wb") as output:
            processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=root))
        _wait_healthy(url, processes[-1], log)

    def stop() -> None:
        _stop_group(processes[-1])
        with socket.socket() as probe:  # the port is free again: nothing answers there any more
            assert probe.connect_ex(("127.0.0.1", port)) != 0

    start()
    try:
        yield url, stop, start
    finally:
        for process in processes:
            _stop_group(process)


def test_replay_delivers_the_spool_to_the_same_mlflow_run(
    restartable_server: tuple[str, Callable[[], None], Callable[[], None]],
    tracelet_start: Start,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, stop_server, start_server = restartable_server
    # MLflow's HTTP client retries a refused connection for minutes by default: fail at once instead.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    run = tracelet_start(
        project="replay",
        backends=["mlflow"],
        config={"mlflow": {"tracking_uri": url}, "retry_attempts": 1, "breaker_cooldown": 600},
    )
    for step in range(100):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_params({"lr": 0.1})
    assert run.flush(timeout=60)
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    run_id = backend.run_id
    assert run_id is not None

    stop_server()
    for step in range(100, 300):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.log_params({"lr": 0.2})  # a changed param: MLflow keeps it as lr.v2, so order matters
    run.log_params({"lr": 0.3})
    run.set_tags({"phase": "offline"})
    assert not run.stop(RunStatus.KILLED, timeout=10)  # the breaker stays open past the deadline: spooled
    stats = run.stats()["mlflow"]
    assert stats.spooled > 0, stats
    spool = tmp_path / ".tracelet" / "spool"
    assert [path.name for path in spool.iterdir()] == [run.id]

    start_server()
    client = MlflowClient(url)
    assert client.get_run(run_id).info.status == "RUNNING"  # its end never reached the server
    assert len(client.get_metric_history(run_id, "loss")) == 100

    environment = _clean_environment(TRACELET_MLFLOW_TRACKING_URI=url)
    replayed = subprocess.run(
        [str(_TRACELET_CLI), "replay", str(spool)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"mlflow run {run.id}: {stats.spooled} records sent, done" in replayed.stderr

    stored = client.get_run(run_id)
    assert stored.info.status == "KILLED"  # the status the run was stopped with
    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(step, 1.0 / (step + 1)) for step in range(300)]
    assert stored.data.params == {"lr": "0.1", "lr.v2": "0.2", "lr.v3": "0.3"}
    assert stored.data.tags["phase"] == "offline"
    assert len(client.search_runs([stored.info.experiment_id])) == 1  # the same run, no second one
    assert not (spool / run.id).exists()

    again = subprocess.run(
        [str(_TRACELET_CLI), "replay", str(spool)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to replay" in again.stderr
    assert len(client.get_metric_history(run_id, "loss")) == 300


@pytest.mark.parametrize(("rank", "log_all_ranks"), [("0", False), ("2", True)])
def test_rank_tags_on_the_mlflow_run(
    rank: str, log_all_ranks: bool, sqlite_uri: str, tracelet_start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process of a distributed job as torchrun starts it: RANK in the environment before start().
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", rank)
    experiment = f"ranks-{rank}"
    run = tracelet_start(
        project=experiment,
        name="train",
        backends=["mlflow"],
        config={"mlflow": {"tracking_uri": sqlite_uri}, "log_all_ranks": log_all_ranks},
    )
    run.log_metric("loss", 0.5, step=1)
    assert run.stop(timeout=60)

    client = MlflowClient(sqlite_uri)
    (stored,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert stored.info.run_name == ("train" if rank == "0" else f"train-rank{rank}")
    assert stored.data.tags["tracelet.rank"] == rank
    assert stored.data.tags["tracelet.node"] == socket.gethostname()
    assert stored.data.metrics == {"loss": 0.5}
