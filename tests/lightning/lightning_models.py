"""A tiny LightningModule on synthetic data, built against either Lightning package."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

PACKAGES = ("lightning.pytorch", "pytorch_lightning")


def lightning(package: str) -> ModuleType:
    return importlib.import_module(package)


def data(samples: int = 64, batch_size: int = 8, seed: int = 0) -> DataLoader[Any]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(samples, 4, generator=generator)
    targets = features @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return DataLoader(TensorDataset(features, targets), batch_size=batch_size)


def regression_module(package: str, *, fail_at_step: int | None = None) -> Any:
    """A linear regression that logs tensors and floats, per step and per epoch, and validation metrics."""
    pl = lightning(package)

    class Regression(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self, learning_rate: float = 0.05, hidden: int = 4, optimizer: str = "sgd") -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if fail_at_step is not None and self.global_step == fail_at_step:
                raise RuntimeError("training diverged")
            features, targets = batch
            loss = torch.nn.functional.mse_loss(self.layer(features), targets)
            self.log("train_loss", loss, on_step=True, on_epoch=True)  # a tensor
            self.log("batch_float", float(batch_idx) / 10, on_step=True, on_epoch=False)  # a float
            self.log_dict({"abs_weight": self.layer.weight.abs().sum()}, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            features, targets = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(features), targets))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)

    return Regression()


def trainer(package: str, root: Any, **kwargs: Any) -> Any:
    pl = lightning(package)
    options: dict[str, Any] = {
        "max_epochs": 2,
        "log_every_n_steps": 1,
        "default_root_dir": str(root),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
    }
    options.update(kwargs)
    return pl.Trainer(**options)
