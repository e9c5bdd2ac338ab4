"""Nested runs in MLflow: examples/cross_validation.py read back from a real sqlite store."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest
from mlflow import MlflowClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cross_validation.py"


def test_cross_validation_example_shows_three_folds_under_one_parent(
    sqlite_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the spool, as a user's script would have it
    monkeypatch.setenv("TRACELET_PLUGINS", "mlflow")
    monkeypatch.setenv("TRACELET_MLFLOW_TRACKING_URI", sqlite_uri)
    spec = importlib.util.spec_from_file_location("cross_validation", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    scores = example.main()

    client = MlflowClient(sqlite_uri)
    experiment = client.get_experiment_by_name("tracelet-examples")
    assert experiment is not None
    every_run = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in every_run if "mlflow.parentRunId" not in run.data.tags]
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(every_run) == 4
    assert sorted(child.info.run_name for child in children) == ["fold-1", "fold-2", "fold-3"]
    assert parent.info.run_name == "cross-validation"
    assert parent.info.status == "FINISHED"
    assert parent.data.params["folds"] == "3"
    assert parent.data.metrics["cv/mean_accuracy"] == pytest.approx(statistics.fmean(scores.values()))
    epochs = example.CONFIG["epochs"]
    for child in children:
        name = child.info.run_name
        assert child.info.status == "FINISHED"
        assert child.data.tags["tracelet.parent_run_id"] == parent.data.tags["tracelet.run_id"]
        assert child.data.params["fold"] == name.removeprefix("fold-")
        accuracy = client.get_metric_history(child.info.run_id, "val/accuracy")
        assert [(point.step, point.value) for point in accuracy] == [(epochs, scores[name])]
        loss = client.get_metric_history(child.info.run_id, "train/loss")
        assert sorted(point.step for point in loss) == list(range(epochs))
        assert "cv/mean_accuracy" not in child.data.metrics
    assert "train/loss" not in parent.data.metrics
