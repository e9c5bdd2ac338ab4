"""Lightning -> TraceletLogger -> tracelet-aim -> a real AIM repository, read back through aim.Repo; CSVLogger is the truth."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tracelet.run import Run

pytest.importorskip("lightning")
sys.path.insert(0, str(Path(__file__).parents[1] / "lightning"))
from conftest import read_aim_run
from lightning_models import PACKAGES, data, lightning, regression_module, trainer
from lightning_truth import csv_series

from tracelet_aim import AimBackend


@pytest.mark.tracelet_plugins("lightning", "pytorch")
def test_every_csv_row_reaches_aim(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    package = PACKAGES[0]
    pl = lightning(package)
    repo = tmp_path / "repo"
    run = tracelet_start(backends=["aim"], config={"aim": {"repo": str(repo), "experiment": "lightning"}})
    csv_logger = pl.loggers.CSVLogger(str(tmp_path / "csv"), name="truth")
    fitted = trainer(package, tmp_path, logger=csv_logger)
    fitted.fit(regression_module(package), data(), data(seed=1))
    assert run.stop(timeout=60), run.stats()["aim"]
    backend = run.get_plugin("aim")
    assert isinstance(backend, AimBackend)
    assert backend.run_hash is not None

    stored = read_aim_run(repo, backend.run_hash)
    assert stored.status == "FINISHED"
    truth = csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    # tracelet-pytorch's optimizer capture is in the run too: SGD's constant lr once, its hyperparameters as params.
    assert [(step, value) for step, value, _ in stored.metrics.pop("optimizer/SGD/group0/lr")] == [(0, 0.05)]
    assert set(stored.metrics) == set(truth)
    for name, points in truth.items():
        # every point, in logging order, none overwritten
        assert [(step, value) for step, value, _ in stored.metrics[name]] == points, name
    repeated = len(truth["epoch"]) - len({step for step, _ in truth["epoch"]})
    assert repeated > 0  # Lightning logs `epoch` on training and validation rows of one step: AIM's repeat contexts
    lightning_params = {name: value for name, value in stored.params.items() if not name.startswith("optimizer/")}
    assert lightning_params == {"learning_rate": "0.05", "hidden": "4", "optimizer": "sgd"}
    assert stored.params["optimizer/SGD/group0/lr"] == "0.05"
