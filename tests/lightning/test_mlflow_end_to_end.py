"""Lightning -> TraceletLogger -> tracelet-mlflow -> a real MLflow sqlite store, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tracelet.run import Run

sys.path.insert(0, str(Path(__file__).parent))
from lightning_models import PACKAGES, data, lightning, regression_module, trainer
from test_lightning import OPTIMIZER_LR, csv_series, not_optimizer

mlflow = pytest.importorskip("mlflow")


def test_every_csv_row_reaches_mlflow(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    package = PACKAGES[0]
    pl = lightning(package)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracelet_start(backends=["mlflow"], config={"mlflow": {"tracking_uri": uri, "experiment": "lightning"}})
    csv_logger = pl.loggers.CSVLogger(str(tmp_path / "csv"), name="truth")
    checkpoint = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1)
    fitted = trainer(package, tmp_path, logger=csv_logger, callbacks=[checkpoint])
    fitted.fit(regression_module(package), data(), data(seed=1))
    assert run.stop(timeout=60)

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lightning")
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.info.status == "FINISHED"
    truth = csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    assert set(stored.data.metrics) - {OPTIMIZER_LR} == set(truth)  # beside tracelet-pytorch's LR series
    for name, points in truth.items():
        history = client.get_metric_history(stored.info.run_id, name)
        assert sorted((m.step, m.value) for m in history) == sorted(points), name
    assert not_optimizer(stored.data.params) == {"learning_rate": "0.05", "hidden": "4", "optimizer": "sgd"}
    artifacts = [a.path for a in client.list_artifacts(stored.info.run_id, "checkpoints")]
    assert artifacts == [f"checkpoints/{Path(checkpoint.best_model_path).name}"]


def test_ddp_gives_one_mlflow_run_with_every_row_once(tmp_path: Path) -> None:
    # Two real processes (DDP, gloo, CPU): Lightning re-launches the script for rank 1, which
    # core's rank policy makes inert. Ground truth: rank 0's CSVLogger.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACELET_")} | {"TRACELET_STRICT": "1"}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = Path(__file__).parent / "ddp_script.py"
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path), uri], capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1))
    assert rank1 == {"run_id": "", "plugins": [], "metrics": [], "params": {}}  # inert: no plugin, no backend run
    assert {"recording", "mlflow", "lightning"} <= set(rank0["plugins"])

    truth = csv_series(tmp_path / "csv" / "truth" / "version_0" / "metrics.csv")
    recorded: dict[str, list[tuple[int, float]]] = {}
    for name, step, value in rank0["metrics"]:
        recorded.setdefault(name, []).append((step, value))
    assert recorded.pop(OPTIMIZER_LR) == [(0, 0.05)]  # tracelet-pytorch's LR series, beside Lightning's rows
    assert recorded == truth  # every row once, in Lightning's order

    client = mlflow.MlflowClient(tracking_uri=uri)
    (stored,) = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])  # exactly one run
    assert stored.info.status == "FINISHED"
    assert stored.data.tags["tracelet.run_id"] == rank0["run_id"]
    assert set(stored.data.metrics) - {OPTIMIZER_LR} == set(truth)  # beside tracelet-pytorch's LR series
    for name, points in truth.items():
        history = client.get_metric_history(stored.info.run_id, name)
        assert sorted((m.step, m.value) for m in history) == sorted(points), name  # no point twice, none missing
    assert not_optimizer(stored.data.params) == {"learning_rate": "0.05", "hidden": "4", "optimizer": "sgd"}
