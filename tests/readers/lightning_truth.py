"""Lightning's ``CSVLogger`` as the ground truth for backends' Lightning tests: a small regression model
that logs on step and epoch, its data, and a reader of the ``metrics.csv`` the logger writes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")


def data(seed: int) -> Any:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(64, 4, generator=generator)
    targets = features @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, targets), batch_size=8)


class Regression(pl.LightningModule):  # type: ignore[misc, name-defined]
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


def csv_series(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """``name -> [(step, value), ...]`` of every non-empty cell of Lightning's metrics.csv, in row order."""
    series: dict[str, list[tuple[int, float]]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            for name, cell in row.items():
                if name != "step" and cell != "":
                    series.setdefault(name, []).append((int(row["step"]), float(cell)))
    return series
