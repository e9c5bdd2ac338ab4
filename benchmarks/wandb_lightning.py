"""A tiny Lightning training logging to W&B offline: Tracelet's W&B backend vs Lightning's own WandbLogger.

3000 steps (one epoch), ``log_every_n_steps=1``, three ``self.log`` calls per step, CPU,
W&B offline (the real wandb-core service) with its system metrics and console capture off on
both sides. Configurations run in turn in one process, ``--rounds`` times each; the figure is the
fastest (best-of, to damp other processes' noise), wall time of the whole fit including the
W&B run's end:

- ``logger=False``: the baseline, no logging at all;
- ``tracelet (recording)``: the same with core's in-memory recording backend: Tracelet's own share;
- ``tracelet (wandb)``: ``tracelet.start(backends=["wandb"])``, the TraceletLogger attached
  automatically, until ``tracelet.stop()`` returns (the W&B run finished, its service stopped);
- ``WandbLogger``: Lightning's own logger (``offline=True``), until ``wandb.finish()`` and
  ``wandb.teardown()`` return.

    .tox/wandb/bin/python benchmarks/wandb_lightning.py [--steps 3000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import tracelet


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        features, targets = batch
        loss = torch.nn.functional.mse_loss(self.layer(features), targets)
        self.log("loss", loss)
        self.log("batch", float(batch_idx))
        self.log("weight", self.layer.weight.sum())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(steps: int, root: str, logger: Any) -> None:
    features = torch.randn(steps, 4)
    loader = DataLoader(TensorDataset(features, features.sum(dim=1, keepdim=True)), batch_size=1)
    trainer = pl.Trainer(
        max_epochs=1, log_every_n_steps=1, logger=logger, default_root_dir=root, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(Tiny(), loader)


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = tempfile.mkdtemp()
    home = Path(root) / "home"
    home.mkdir()
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home), WANDB_DIR=root)
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    def plain() -> None:
        fit(args.steps, root, False)

    def with_tracelet() -> None:
        run = tracelet.start(backends=["wandb"], config={"wandb": {"dir": root}})
        fit(args.steps, root, False)
        assert run.stop(timeout=120)

    def with_recording() -> None:
        run = tracelet.start(backends=["recording"])
        fit(args.steps, root, False)
        assert run.stop(timeout=120)

    def wandb_logger() -> None:
        settings = wandb.Settings(console="off", x_disable_stats=True)
        fit(args.steps, root, WandbLogger(project="lightning-own", save_dir=root, offline=True, settings=settings))
        wandb.finish()
        wandb.teardown()

    plain()  # warm-up: first fit pays one-time costs
    configurations = {
        "logger=False": plain,
        "tracelet (recording)": with_recording,
        "tracelet (wandb)": with_tracelet,
        "WandbLogger": wandb_logger,
    }
    times: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, run in configurations.items():
            times[name].append(timed(run))
    base = min(times["logger=False"])
    for name, measured in times.items():
        print(f"{name:20s} {min(measured):6.2f} s  {min(measured) / base:5.2f}x logger=False  (all: {measured})")
    print(f"tracelet (wandb) vs WandbLogger: {min(times['tracelet (wandb)']) / min(times['WandbLogger']):.2f}x")


if __name__ == "__main__":
    main()
