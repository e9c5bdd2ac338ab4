"""A tiny Lightning training logging to a local AIM repository: Tracelet's AIM backend vs AIM's own Lightning logger.

3000 steps (one epoch), ``log_every_n_steps=1``, three ``self.log`` calls per step, CPU, a
local AIM repository in a temp dir, AIM's own system tracking, system params and terminal
capture off on both sides. Configurations run in turn in one process (interleaved),
``--rounds`` times each; the figure is the fastest (best-of, to damp other processes' noise),
wall time of the whole fit including the AIM run's close:

- ``logger=False``: the baseline, no logging at all;
- ``tracelet (recording)``: the same with core's in-memory recording backend: Tracelet's own share;
- ``tracelet (aim)``: ``tracelet.start(backends=["aim"])``, the TraceletLogger attached
  automatically, until ``tracelet.stop()`` returns (every point stored, the AIM run closed and indexed);
- ``AimLogger``: aim's own ``aim.pytorch_lightning.AimLogger`` (it subclasses Lightning 2.x's
  ``Logger``), until ``trainer.fit`` returns (its ``finalize`` closes the AIM run).

Each AIM run's points are counted afterwards through ``aim.Repo``, so a logger that silently
logged nothing cannot win. AimLogger stores Lightning's ``epoch`` as AIM's epoch field of each
point; Tracelet keeps it as a metric of its own, so it stores one point more a step.

    .tox/aim/bin/python benchmarks/aim_lightning.py [--steps 3000] [--rounds 3]
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = tempfile.mkdtemp()
    home = Path(root) / "home"
    home.mkdir()
    os.environ["HOME"] = str(home)
    import aim
    from aim.pytorch_lightning import AimLogger
    from aim.sdk.index_manager import RepoIndexManager

    stored_runs: list[tuple[str, str, str]] = []  # (configuration, repository, run hash): counted after the timing
    counts: dict[str, list[int]] = {}
    stop_times: list[float] = []

    def count(name: str, repo: str, run_hash: str) -> None:
        """The points the run stored, read back through ``aim.Repo`` (after indexing the closed run)."""
        repository = aim.Repo.from_path(repo)
        RepoIndexManager.get_index_manager(repository).index(run_hash)
        stored = repository.get_run(run_hash)
        assert stored is not None
        points = 0
        for metric, context, _ in stored.iter_sequence_info_by_type(("float", "int")):
            points += len(stored.get_metric(metric, context).data.indices_list())
        counts.setdefault(name, []).append(points)

    def plain() -> None:
        fit(args.steps, root, False)

    def with_recording() -> None:
        run = tracelet.start(backends=["recording"])
        fit(args.steps, root, False)
        assert run.stop(timeout=120)
        counts.setdefault("tracelet (recording)", []).append(run.stats()["recording"].delivered)

    def with_tracelet() -> None:
        repo = tempfile.mkdtemp(dir=root)
        run = tracelet.start(backends=["aim"], config={"aim": {"repo": repo}})
        fit(args.steps, root, False)
        stopping = time.perf_counter()
        assert run.stop(timeout=120)
        stop_times.append(time.perf_counter() - stopping)  # AIM still storing after the fit, and its close
        backend = run.get_plugin("aim")
        stored_runs.append(("tracelet (aim)", repo, backend.run_hash))  # type: ignore[attr-defined]

    def aim_logger() -> None:
        repo = tempfile.mkdtemp(dir=root)
        logger = AimLogger(
            repo=repo, experiment="lightning-own", system_tracking_interval=None, log_system_params=False,
            capture_terminal_logs=False,
        )  # fmt: skip
        fit(args.steps, root, logger)
        stored_runs.append(("AimLogger", repo, logger._run_hash))

    plain()  # warm-up: first fit pays one-time costs
    configurations = {
        "logger=False": plain,
        "tracelet (recording)": with_recording,
        "tracelet (aim)": with_tracelet,
        "AimLogger": aim_logger,
    }
    times: dict[str, list[float]] = {name: [] for name in configurations}
    for _ in range(args.rounds):
        for name, run in configurations.items():
            times[name].append(timed(run))
    for stored_run in stored_runs:
        count(*stored_run)
    base = min(times["logger=False"])
    for name, measured in times.items():
        print(f"{name:20s} {min(measured):6.2f} s  {min(measured) / base:5.2f}x logger=False  (all: {measured})")
    print(f"tracelet (aim): of which stop() {[round(stop, 2) for stop in stop_times]} s")
    print(f"tracelet (aim) vs AimLogger: {min(times['tracelet (aim)']) / min(times['AimLogger']):.2f}x")
    print(f"points per run ({3 * args.steps} self.log calls; Tracelet also keeps Lightning's epoch metric): {counts}")


if __name__ == "__main__":
    main()
