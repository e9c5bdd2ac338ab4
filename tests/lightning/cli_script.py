"""A real LightningCLI script for tests/lightning/test_cli.py, run as a subprocess.

``python cli_script.py <out.json> fit --config ... --model.x ...``: starts Tracelet (backends and
plugins from the ``TRACELET_*`` environment), runs ``LightningCLI`` on the rest of the command line,
stops the run and writes what the recording backend received, and where Lightning saved its config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from torch.utils.data import DataLoader, TensorDataset

import tracelet


class Regression(LightningModule):
    def __init__(self, learning_rate: float = 0.05, hidden: int = 4, api_key: str = "none") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(features), targets)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)


class Data(LightningDataModule):
    def __init__(self, batch_size: int = 8, samples: int = 32, widths: list[int] | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.samples = samples

    def train_dataloader(self) -> DataLoader[Any]:
        generator = torch.Generator().manual_seed(0)
        features = torch.randn(self.samples, 4, generator=generator)
        return DataLoader(TensorDataset(features, features.sum(dim=1, keepdim=True)), batch_size=self.batch_size)


def main() -> None:
    out = Path(sys.argv.pop(1))
    run = tracelet.start()
    backend = run.get_plugin("recording")
    cli = LightningCLI(Regression, Data, save_config_kwargs={"overwrite": True})
    log_dir = cli.trainer.log_dir
    assert run.stop(timeout=60)
    artifacts = {record.name: Path(record.path).read_text() for record in backend.records if type(record).__name__ == "Artifact"}
    result = {
        "run": run.id,
        "params": backend.params,
        "artifacts": artifacts,
        "config_path": str(Path(log_dir) / "config.yaml"),
    }
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
