"""Lightning -> TraceletLogger -> tracelet-clearml -> ClearML offline, read back; CSVLogger is the ground truth."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_conformance import read_stored

from tracelet.run import Run

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")


def _data(seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(64, 4, generator=generator)
    targets = features @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, targets), batch_size=8)


class _Regression(pl.LightningModule):  # type: ignore[misc, name-defined]
    def __init__(self, learning_rate: float = 0.05, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(features), targets)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        self.log("batch_float", float(batch_idx) / 10, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        features, targets = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(features), targets))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


def _csv_series(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """``name -> [(step, value), ...]`` of every non-empty cell of Lightning's metrics.csv, in row order."""
    series: dict[str, list[tuple[int, float]]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            for name, cell in row.items():
                if name != "step" and cell != "":
                    series.setdefault(name, []).append((int(row["step"]), float(cell)))
    return series


@pytest.mark.tracelet_plugins("lightning")
def test_every_csv_logger_row_reaches_clearml_at_the_same_step(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"offline": True}})
    csv_logger = pl.loggers.CSVLogger(str(tmp_path / "csv"), name="truth")
    trainer = pl.Trainer(
        max_epochs=2,
        log_every_n_steps=1,
        default_root_dir=str(tmp_path),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
        logger=csv_logger,
    )
    trainer.fit(_Regression(), _data(0), _data(1))
    backend = run.get_plugin("clearml")
    assert run.stop(timeout=60), run.stats()["clearml"]
    stored = read_stored(backend.task_id)  # type: ignore[attr-defined]
    truth = _csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    assert truth  # Lightning logged something
    for name, points in truth.items():
        assert [(step, value) for step, value, _ in stored.metrics.get(name, [])] == points, name
    assert {"learning_rate": "0.05", "hidden": "4"}.items() <= stored.params.items()
    assert stored.status == "FINISHED"
