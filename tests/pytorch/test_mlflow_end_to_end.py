"""Optimizer capture and watch() end to end: real torch -> Tracelet -> a real MLflow sqlite store, read back with MlflowClient."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import tracelet
from tracelet.run import Run


def test_lr_series_params_histograms_and_summary_reach_mlflow(
    tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # MLflow writes under ~
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = tracelet_start(backends=["mlflow"], mlflow={"tracking_uri": uri, "experiment": "watch"})

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    tracelet.watch(model, log="all", every=2)
    inputs = torch.randn(6, 3)
    lrs, gradients = [], {}
    for step in range(5):
        optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        lrs.append(scheduler.get_last_lr()[0])
        gradients[step] = model[0].weight.grad.detach().clone()
        optimizer.step()
        scheduler.step()
    assert run.stop(timeout=60)
    mlflow_run_id = run.stats()["mlflow"].run_id
    assert mlflow_run_id

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    stored = client.get_run(mlflow_run_id)
    assert stored.data.params["optimizer/AdamW/group0/lr"] == "0.01"
    assert stored.data.params["optimizer/AdamW/group0/betas"] == "[0.9, 0.999]"
    assert stored.data.params["model/parameters"] == str(sum(p.numel() for p in model.parameters()))
    history = client.get_metric_history(mlflow_run_id, "optimizer/AdamW/group0/lr")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, lrs[0]), (2, lrs[2]), (4, lrs[4])]
    assert lrs[2] == pytest.approx(0.001) and lrs[4] == pytest.approx(0.0001)

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    summary = client.download_artifacts(mlflow_run_id, "model.txt", str(downloads))
    assert Path(summary).read_text(encoding="utf-8") == f"{model}\n"
    for step in (0, 2, 4):
        path = client.download_artifacts(mlflow_run_id, f"histograms/gradients/0.weight/step-{step:010d}.json", str(downloads))
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        values = gradients[step].numpy().ravel()
        assert document["step"] == step
        assert document["counts"] == np.histogram(values, bins=np.array(document["edges"]))[0].tolist()
        assert (document["min"], document["max"], document["count"]) == (values.min(), values.max(), values.size)
    minimum = client.get_metric_history(mlflow_run_id, "gradients/0.weight/min")
    assert [(m.step, m.value) for m in sorted(minimum, key=lambda m: m.step)] == [
        (step, float(gradients[step].min())) for step in (0, 2, 4)
    ]
