"""Lightning -> TraceletLogger -> tracelet-clearml -> ClearML offline, read back; CSVLogger is the ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from lightning_truth import Regression, csv_series, data, pl
from test_conformance import read_stored

from tracelet.run import Run


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
    trainer.fit(Regression(), data(0), data(1))
    backend = run.get_plugin("clearml")
    assert run.stop(timeout=60), run.stats()["clearml"]
    stored = read_stored(backend.task_id)  # type: ignore[attr-defined]
    truth = csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    assert truth  # Lightning logged something
    for name, points in truth.items():
        assert [(step, value) for step, value, _ in stored.metrics.get(name, [])] == points, name
    assert {"learning_rate": "0.05", "hidden": "4"}.items() <= stored.params.items()
    assert stored.status == "FINISHED"
