"""Lightning -> TraceletLogger -> tracelet-wandb -> W&B offline, read back from W&B's files; CSVLogger is the ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lightning_truth import Regression, csv_series, data, pl
from wandb_reader import read_finished_run

from tracelet.run import Run


@pytest.mark.tracelet_plugins("lightning")
def test_every_csv_logger_row_reaches_w_and_b_at_the_same_step(
    start_wandb: Callable[..., Run], wandb_dir: Path, tmp_path: Path
) -> None:
    run = start_wandb()
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
    trainer.fit(Regression(), data(0), data(1))
    backend = run.get_plugin("wandb")
    assert run.stop(timeout=60), run.stats()["wandb"]
    stored = read_finished_run(wandb_dir, backend.run_id)  # type: ignore[attr-defined]
    truth = csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    assert truth  # Lightning logged something
    for name, points in truth.items():
        got = [(row["tracelet/step"], row[name]) for row in stored.history if name in row]
        assert got == points, name
    assert {"learning_rate": 0.05, "hidden": 4}.items() <= stored.config.items()
    assert stored.exit_codes == [0]
