"""The MLflow run's life: status, resume, a user's own fluent run, settings, failures, imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import tracelet
from tracelet.errors import ConfigError
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend, MlflowSettings
from tracelet_mlflow.settings import resolve_tracking_uri

Start = Callable[..., Run]
Finish = Callable[..., MlflowBackend]


def status_of(uri: str, run: Run) -> str:
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    assert backend.run_id is not None
    return str(MlflowClient(uri).get_run(backend.run_id).info.status)


def test_failed_when_the_with_block_raises(sqlite_uri: str, tracelet_start: Start) -> None:
    started: list[Run] = []

    def train() -> None:
        with tracelet.start(backends=["mlflow"], config={"mlflow.tracking_uri": sqlite_uri}) as run:
            started.append(run)
            run.log_metric("loss", 1.0, step=0)
            raise ValueError("diverged")

    with pytest.raises(ValueError, match="diverged"):
        train()
    assert status_of(sqlite_uri, started[0]) == "FAILED"
    assert started[0].stats()["mlflow"].delivered == 1


def test_killed_on_keyboard_interrupt_and_by_stop(sqlite_uri: str, start_mlflow: Start) -> None:
    with pytest.raises(KeyboardInterrupt), start_mlflow(sqlite_uri) as interrupted:
        raise KeyboardInterrupt
    assert status_of(sqlite_uri, interrupted) == "KILLED"
    stopped = start_mlflow(sqlite_uri)
    assert stopped.stop("KILLED", timeout=60)
    assert status_of(sqlite_uri, stopped) == "KILLED"


def test_run_reference_in_stats(store_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run = start_mlflow(store_uri)
    backend = finish(run)
    stats = run.stats()["mlflow"]
    assert stats.run_id == backend.run_id
    if store_uri.startswith("http"):
        assert stats.url == f"{store_uri}/#/experiments/{backend.experiment_id}/runs/{backend.run_id}"
    else:
        assert stats.url is None


def test_users_fluent_run_alongside(
    sqlite_uri: str, start_mlflow: Start, finish: Finish, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)  # the user's fluent API uses the same store
    mlflow.set_experiment(f"user-{request.node.name}")
    client = MlflowClient(sqlite_uri)
    with mlflow.start_run() as user_run:
        mlflow.log_metric("user_metric", 1.0, step=0)
        run = start_mlflow(sqlite_uri)
        run.log_metric("ours", 5.0, step=0)
        run.log_params({"ours_param": 1})
        assert run.flush(timeout=60)
        mlflow.log_metric("user_metric", 2.0, step=1)
        mlflow.log_param("user_param", "u")
        backend = finish(run)
        active = mlflow.active_run()
        assert active is not None
        assert active.info.run_id == user_run.info.run_id
        assert client.get_run(user_run.info.run_id).info.status == "RUNNING"  # our stop ended only our run
    assert mlflow.active_run() is None

    ours, users = client.get_run(backend.run_id), client.get_run(user_run.info.run_id)
    assert backend.run_id != user_run.info.run_id
    assert ours.info.experiment_id != users.info.experiment_id
    assert set(ours.data.metrics) == {"ours"}
    assert ours.data.params == {"ours_param": "1"}
    assert ours.info.status == "FINISHED"
    assert [(p.step, p.value) for p in client.get_metric_history(users.info.run_id, "user_metric")] == [(0, 1.0), (1, 2.0)]
    assert users.data.params == {"user_param": "u"}
    assert set(users.data.metrics) == {"user_metric"}
    assert users.info.status == "FINISHED"


def test_resume_by_run_id(sqlite_uri: str, start_mlflow: Start, finish: Finish) -> None:
    first = start_mlflow(sqlite_uri)
    for step in range(5):
        first.log_metric("loss", 1.0 / (step + 1), step=step)
    first.log_params({"lr": 0.1})
    run_id = finish(first).run_id

    second = start_mlflow(sqlite_uri, run_id=run_id)
    for step in range(5, 10):
        second.log_metric("loss", 1.0 / (step + 1), step=step)
    second.log_params({"lr": 0.1, "epochs": 2})  # same lr as before: not a change
    second.log_params({"lr": 0.2})
    assert finish(second, "KILLED").run_id == run_id
    assert MlflowClient(sqlite_uri).get_run(run_id).info.status == "KILLED"

    third = start_mlflow(sqlite_uri, run_id=run_id)
    third.log_params({"lr": 0.2})  # the latest value, found among the resumed run's params
    third.log_params({"lr": 0.3})
    finish(third)

    client = MlflowClient(sqlite_uri)
    resumed = client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert [(p.step, p.value) for p in client.get_metric_history(run_id, "loss")] == [(s, 1.0 / (s + 1)) for s in range(10)]
    assert resumed.data.params == {"lr": "0.1", "lr.v2": "0.2", "lr.v3": "0.3", "epochs": "2"}
    assert resumed.data.tags["tracelet.run_id"] == third.id  # each resume records the Tracelet run attached last
    assert len(client.search_runs([resumed.info.experiment_id])) == 1


def test_settings_from_environment(
    start_mlflow: Start, tracelet_start: Start, finish: Finish, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///relative.db")  # relative to the directory at start()
    monkeypatch.setenv("TRACELET_MLFLOW_EXPERIMENT", "from-env")
    monkeypatch.setenv("TRACELET_MLFLOW_RUN_NAME", "named-by-env")
    monkeypatch.setenv("TRACELET_MLFLOW_TAGS", "owner=ada,purpose=test")
    run = tracelet_start(project="ignored-for-the-experiment", backends=["mlflow"])
    backend = finish(run)

    assert backend.tracking_uri == f"sqlite:///{tmp_path}/relative.db"
    assert (tmp_path / "relative.db").is_file()
    mlflow_run = MlflowClient(backend.tracking_uri).get_run(backend.run_id)
    assert mlflow_run.info.run_name == "named-by-env"
    assert MlflowClient(backend.tracking_uri).get_experiment(mlflow_run.info.experiment_id).name == "from-env"
    assert (mlflow_run.data.tags["owner"], mlflow_run.data.tags["purpose"]) == ("ada", "test")


def test_tracking_uri_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None, {}) == f"sqlite:///{tmp_path}/mlflow.db"  # MLflow's default, made absolute
    assert resolve_tracking_uri(None, {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///a/b.db?timeout=5", {}) == f"sqlite:///{tmp_path}/a/b.db?timeout=5"
    assert resolve_tracking_uri("sqlite:////abs/c.db", {"MLFLOW_TRACKING_URI": "x"}) == "sqlite:////abs/c.db"
    assert resolve_tracking_uri("sqlite:///:memory:", {}) == "sqlite:///:memory:"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert MlflowBackend(MlflowSettings()).tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"


@pytest.mark.parametrize("bad", ["/absolute", "../outside", "a\\b"])
def test_artifact_path_must_stay_inside_the_run(bad: str, tracelet_start: Start, sqlite_uri: str) -> None:
    with pytest.raises(ConfigError, match="artifact_path"):
        tracelet_start(backends=["mlflow"], config={"mlflow": {"tracking_uri": sqlite_uri, "artifact_path": bad}})


def test_unknown_resume_id_fails_the_backend_not_the_script(sqlite_uri: str, start_mlflow: Start) -> None:
    run = start_mlflow(sqlite_uri, run_id="0123456789abcdef0123456789abcdef")
    run.log_metric("loss", 1.0)
    assert not run.stop(timeout=60)
    stats = run.stats()["mlflow"]
    assert (stats.state, stats.failed, stats.delivered) == ("failed", 1, 0)
    assert "0123456789abcdef0123456789abcdef" in (stats.last_error or "")


def test_discovery_imports_no_mlflow(tmp_path: Path) -> None:
    code = (
        "import sys, tracelet, tracelet_mlflow\n"
        "from tracelet.plugins import discover\n"
        "entry = {e.name: e for e in discover()}['mlflow']\n"
        "assert entry.status == 'loaded' and entry.info.max_batch_size == 1000, entry\n"
        "tracelet_mlflow.MlflowBackend(tracelet_mlflow.MlflowSettings())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'PIL')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
