"""A tiny Lightning training with Tracelet vs logger=False, and vs Lightning's own MLFlowLogger.

3000 steps (one epoch), log_every_n_steps=1, three self.log calls per step,
CPU. Configurations run in turn in one process, twice each; the figure is
the faster of the two (best-of, to damp other processes' noise):

- ``logger=False``: the baseline, no logging at all;
- ``no-op Logger``: a Lightning ``Logger`` whose methods do nothing: what
  Lightning's own logging path costs (converting every value, building the
  metrics dict, calling the logger) before any logger does any work;
- ``CSVLogger``: Lightning's cheapest real logger;
- ``tracelet (recording)``: ``tracelet.start(backends=["recording"])``; the
  TraceletLogger is attached automatically (logger=False);
- ``tracelet (mlflow)``: the same with the MLflow backend on a sqlite store,
  wall time including ``tracelet.stop()`` (which waits for delivery);
- ``MLFlowLogger``: Lightning's own logger on a sqlite store.

    python benchmarks/lightning_overhead.py [--steps 3000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import tracelet


class NoOpLogger(pl.loggers.Logger):
    """Receives everything Lightning logs and does nothing with it."""

    @property
    def name(self) -> str:
        return "noop"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass


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
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = tempfile.mkdtemp()
    uri = f"sqlite:///{root}/mlflow.db"

    def plain() -> None:
        fit(args.steps, root, False)

    def with_tracelet(backend: str) -> Callable[[], None]:
        def run() -> None:
            tracelet.start(backends=[backend], config={"mlflow": {"tracking_uri": uri}} if backend == "mlflow" else {})
            fit(args.steps, root, False)
            tracelet.stop()

        return run

    def mlflow_logger() -> None:
        from lightning.pytorch.loggers import MLFlowLogger

        fit(args.steps, root, MLFlowLogger(tracking_uri=uri, experiment_name="lightning-own"))

    def csv_logger() -> None:
        from lightning.pytorch.loggers import CSVLogger

        fit(args.steps, root, CSVLogger(root))

    plain()  # warm-up: first fit pays one-time costs
    configurations = {
        "logger=False": plain,
        "no-op Logger": lambda: fit(args.steps, root, NoOpLogger()),
        "CSVLogger": csv_logger,
        "tracelet (recording)": with_tracelet("recording"),
        "tracelet (mlflow)": with_tracelet("mlflow"),
        "MLFlowLogger": mlflow_logger,
    }
    times: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(2):
        for name, run in configurations.items():
            times[name].append(timed(run))
    base = min(times["logger=False"])
    for name, measured in times.items():
        print(f"{name:22s} {min(measured):6.2f} s  {min(measured) / base:5.2f}x logger=False")
    print(f"tracelet (recording) vs no-op Logger: {min(times['tracelet (recording)']) / min(times['no-op Logger']):.2f}x")
    print(f"tracelet (mlflow) vs MLFlowLogger: {min(times['tracelet (mlflow)']) / min(times['MLFlowLogger']):.2f}x")


if __name__ == "__main__":
    main()
