"""A Lightning training; one line adds Tracelet.

With tracelet-lightning installed, the Trainer gets a TraceletLogger by
itself: every self.log value (with Lightning's step and epoch), the
save_hyperparameters() values and the kept checkpoints reach every
configured Tracelet backend.

    pip install tracelet-core tracelet-lightning tracelet-mlflow
    python examples/lightning_example.py
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import tracelet


class Regression(pl.LightningModule):
    def __init__(self, learning_rate: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(features), targets)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        features, targets = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(features), targets))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


def loader(seed: int) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(512, 8, generator=generator)
    return DataLoader(TensorDataset(features, features.sum(dim=1, keepdim=True)), batch_size=32)


if __name__ == "__main__":
    tracelet.start(project="examples", name="lightning")  # the only Tracelet line
    trainer = pl.Trainer(max_epochs=5, default_root_dir="examples/outputs/lightning", log_every_n_steps=5)
    trainer.fit(Regression(), loader(0), loader(1))
