"""Hydra capture with a real ``@hydra.main`` app run as a subprocess, and OmegaConf objects through log_params."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from omegaconf import DictConfig, ListConfig, OmegaConf

from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_hydra.patch import TARGET

APP = Path(__file__).parent / "app" / "app.py"
Start = Callable[..., Run]


@pytest.fixture
def tracelet_plugins() -> list[str]:
    return ["hydra"]


def _params(optimizer: str = "adam", **changes: Any) -> dict[str, Any]:
    """The params the app's config gives, with ``changes`` (dotted names) applied."""
    params: dict[str, Any] = {
        "seed": 0,
        "model.name": "mlp",
        "model.layers": "[64, 32]",
        "model.width": 64,
        "data.path": "???",  # missing, marked
        "db.password": "***",  # masked by core's redaction
        "run_name": "mlp-0",
        **(
            {"optimizer.name": "adam", "optimizer.lr": 0.001}
            if optimizer == "adam"
            else {"optimizer.name": "sgd", "optimizer.lr": 0.1, "optimizer.momentum": 0.9}
        ),
    }
    params.update(changes)
    return params


def run_app(tmp_path: Path, mode: str, *overrides: str, **env: str) -> list[dict[str, Any]]:
    """Run the app (``inside``/``outside``) with ``overrides``; what each Tracelet run received, in order."""
    records = tmp_path / "records.jsonl"
    environ = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    environ.update(
        HOME=str(tmp_path),
        APP_TRACELET=mode,
        APP_RECORDS=str(records),
        TRACELET_STRICT="1",
        TRACELET_PLUGINS="recording,hydra",
        TRACELET_BACKENDS="recording",
        TRACELET_SPOOL_DIR=str(tmp_path / "spool"),
    )
    environ.update(env)
    done = subprocess.run(
        [
            sys.executable,
            str(APP),
            *(flag for flag in overrides if flag.startswith("--")),  # Hydra's argparse wants them first
            f"hydra.run.dir={tmp_path}/run",
            f"hydra.sweep.dir={tmp_path}/multirun",
            *(override for override in overrides if not override.startswith("--")),
        ],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    if not records.exists():
        return []
    return [json.loads(line) for line in records.read_text().splitlines()]


def test_single_run_inside_the_task_function(tmp_path: Path) -> None:
    overrides = ("optimizer=sgd", "model.name=cnn", "data.path=/data", "db.password=s3cret")
    (run,) = run_app(tmp_path, "inside", *overrides)
    assert run["params"] == _params("sgd", **{"model.name": "cnn", "run_name": "cnn-0", "data.path": "/data"})
    assert run["tags"] == {
        "hydra.overrides": "optimizer=sgd model.name=cnn data.path=/data db.password=***",
        "hydra.job.name": "app",
        "hydra.mode": "RUN",
        "hydra.output_dir": f"{tmp_path}/run",
    }
    files = run["artifacts"]["hydra"]
    assert sorted(files) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    # Hydra's own files, secrets masked in the copies: equal to the originals with the secret replaced.
    originals = {name: (tmp_path / "run" / ".hydra" / name).read_text() for name in files}
    assert "s3cret" in originals["config.yaml"] and "s3cret" in originals["overrides.yaml"]
    assert files["config.yaml"] == originals["config.yaml"].replace("password: s3cret", "password: ***")
    assert files["overrides.yaml"] == originals["overrides.yaml"].replace("db.password=s3cret", "db.password=***")
    assert all("s3cret" not in text for text in files.values())
    assert "s3cret" not in json.dumps(run)


def test_multirun_gives_one_tracelet_run_per_job(tmp_path: Path) -> None:
    runs = run_app(tmp_path, "inside", "--multirun", "optimizer=adam,sgd", "seed=7")
    assert len(runs) == 2
    assert runs[0]["run"] != runs[1]["run"]
    for number, (run, optimizer) in enumerate(zip(runs, ["adam", "sgd"], strict=True)):
        assert run["params"] == _params(optimizer, seed=7, run_name="mlp-7")
        assert run["tags"] == {
            "hydra.overrides": f"optimizer={optimizer} seed=7",
            "hydra.job.name": "app",
            "hydra.job.num": str(number),
            "hydra.mode": "MULTIRUN",
            "hydra.output_dir": f"{tmp_path}/multirun/{number}",
        }
        saved = (tmp_path / "multirun" / str(number) / ".hydra" / "overrides.yaml").read_text()
        assert run["artifacts"]["hydra"]["overrides.yaml"] == saved


def test_a_run_started_before_the_app_captures_its_job(tmp_path: Path) -> None:
    (run,) = run_app(tmp_path, "outside", "data.path=/d")
    assert run["params"] == _params(**{"data.path": "/d"})
    assert run["tags"]["hydra.overrides"] == "data.path=/d"
    assert sorted(run["artifacts"]["hydra"]) == ["config.yaml", "hydra.yaml", "overrides.yaml"]


def test_a_multirun_under_one_run_keeps_every_job(tmp_path: Path) -> None:
    (run,) = run_app(tmp_path, "outside", "--multirun", "optimizer=adam,sgd")
    # Params: the last job's values win (the first job's are kept where a backend keeps versions).
    assert run["params"] == {**_params("adam"), **_params("sgd")}
    assert run["tags"]["hydra.job.num"] == "1"
    assert sorted(run["artifacts"]) == ["hydra", "hydra/job1"]
    assert run["artifacts"]["hydra"]["overrides.yaml"] == "- optimizer=adam\n"
    assert run["artifacts"]["hydra/job1"]["overrides.yaml"] == "- optimizer=sgd\n"


def test_turned_off_by_a_setting(tmp_path: Path) -> None:
    (run,) = run_app(tmp_path, "inside", TRACELET_HYDRA_ENABLED="false")
    assert run["params"] == {} and run["tags"] == {} and run["artifacts"] == {}


def test_multirun_end_to_end_into_mlflow(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_app(
        tmp_path,
        "inside",
        "--multirun",
        "optimizer=adam,sgd",
        "db.password=s3cret",
        TRACELET_BACKENDS="mlflow",
        TRACELET_PLUGINS="mlflow,hydra",
        TRACELET_MLFLOW_TRACKING_URI=uri,
        TRACELET_MLFLOW_EXPERIMENT="hydra-e2e",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    stored = client.search_runs([client.get_experiment_by_name("hydra-e2e").experiment_id], order_by=["start_time ASC"])
    assert len(stored) == 2
    for number, (run, optimizer) in enumerate(zip(stored, ["adam", "sgd"], strict=True)):
        assert run.info.status == "FINISHED"
        expected = {name: str(value) for name, value in _params(optimizer).items()}
        assert run.data.params == expected
        assert run.data.tags["hydra.overrides"] == f"optimizer={optimizer} db.password=***"
        assert run.data.tags["hydra.job.num"] == str(number)
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "hydra")) == [
            "hydra/config.yaml",
            "hydra/hydra.yaml",
            "hydra/overrides.yaml",
        ]
        local = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="hydra", tracking_uri=uri))
        config = (local / "config.yaml").read_text()
        assert "password: ***" in config and "s3cret" not in config
        assert "s3cret" not in (local / "hydra.yaml").read_text()
        assert run.data.metrics["loss"] == {"adam": 0.001, "sgd": 0.1}[optimizer]


# --- OmegaConf objects through log_params -----------------------------------------------------


def _recorded(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert run.stop(timeout=30)
    assert isinstance(backend, RecordingBackend)
    return backend


def test_a_dictconfig_is_flattened_resolved_and_marked(tracelet_start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_VARIABLE", raising=False)
    config = OmegaConf.create(
        {
            "lr": 0.1,
            "scaled": "${lr}",
            "name": "run-${model.depth}",
            "model": {"depth": 3, "widths": [8, 16], "blocks": [{"kind": "conv"}]},
            "data": "???",
            "nested": {"missing": "???", "empty": {}},
            "api_key": "sk-123",
            "unresolved": "${oc.env:UNSET_VARIABLE}",
            "none": None,
        }
    )
    run = tracelet_start(backends=["recording"])
    run.log_params(config)
    assert isinstance(config, DictConfig)
    assert _recorded(run).params == {
        "lr": 0.1,
        "scaled": 0.1,
        "name": "run-3",
        "model.depth": 3,
        "model.widths": "[8, 16]",
        "model.blocks": '[{"kind": "conv"}]',
        "data": "???",
        "nested.missing": "???",
        "nested.empty": "{}",
        "api_key": "***",
        "unresolved": "${oc.env:UNSET_VARIABLE}",
        "none": None,
    }


def test_a_listconfig_and_the_top_level_api(tracelet_start: Start) -> None:
    import tracelet

    run = tracelet_start(backends=["recording"])
    tracelet.log_params(OmegaConf.create([1, "${0}", {"a": 2}]))
    assert isinstance(OmegaConf.create([]), ListConfig)
    assert _recorded(run).params == {"0": 1, "1": 1, "2.a": 2}


def test_dictconfig_without_the_plugin_is_core_flattening(tracelet_start: Start) -> None:
    # Without tracelet-hydra a DictConfig is a plain mapping to core: reading a missing value raises,
    # so the whole call is refused (strict mode raises). The plugin is what makes it work.
    run = tracelet_start(backends=["recording"], config={"hydra": {"enabled": False}})
    with pytest.raises(TypeError, match="call 'log_params' rejected: takes a mapping, not DictConfig"):
        run.log_params(OmegaConf.create({"a": 1, "b": "???"}))


def test_the_callbacks_class_is_restored_identity_equal(tracelet_start: Start) -> None:
    import importlib

    callbacks = importlib.import_module(TARGET).Callbacks
    original = vars(callbacks)["on_job_start"]
    run = tracelet_start(backends=["recording"])
    assert vars(callbacks)["on_job_start"] is not original
    assert run.stop(timeout=30)
    assert vars(callbacks)["on_job_start"] is original
