"""TraceletLogger and the automatic attachment, with real Lightning on CPU; CSVLogger is the ground truth."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import tracelet
from tracelet.records import Artifact, RunStatus
from tracelet.run import Run
from tracelet.testing import RecordingBackend
from tracelet_lightning import logger_class

sys.path.insert(0, str(Path(__file__).parent))
from lightning_models import PACKAGES, data, lightning, regression_module, trainer


def csv_series(metrics_csv: Path) -> dict[str, list[tuple[int, float]]]:
    """``name -> [(step, value), ...]`` of every non-empty cell of Lightning's metrics.csv, in row order."""
    series: dict[str, list[tuple[int, float]]] = {}
    with metrics_csv.open(newline="") as file:
        for row in csv.DictReader(file):
            for name, cell in row.items():
                if name != "step" and cell != "":
                    series.setdefault(name, []).append((int(row["step"]), float(cell)))
    return series


OPTIMIZER_LR = "optimizer/SGD/group0/lr"
"""The LR series of tracelet-pytorch's optimizer capture, beside the logger's values."""


def not_optimizer(params: dict[str, Any]) -> dict[str, Any]:
    """Params without those of tracelet-pytorch's optimizer capture (``optimizer/<Class>/group<k>/...``)."""
    return {name: value for name, value in params.items() if not name.startswith("optimizer/")}


def recording_of(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def tracelet_loggers(fitted: Any) -> list[Any]:
    return [logger for logger in fitted.loggers if getattr(logger, "_is_tracelet_logger", False)]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_csv_logger_row_reaches_tracelet(package: str, tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    pl = lightning(package)
    run = tracelet_start(backends=["recording"])
    csv_logger = pl.loggers.CSVLogger(str(tmp_path / "csv"), name="truth")
    checkpoint = pl.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=1, save_last=True)
    fitted = trainer(package, tmp_path, logger=csv_logger, callbacks=[checkpoint])
    model = regression_module(package)
    fitted.fit(model, data(), data(seed=1))

    (attached,) = tracelet_loggers(fitted)
    assert type(attached).__module__ == "tracelet_lightning.logger"
    assert isinstance(attached, pl.loggers.logger.Logger)
    assert fitted.loggers[0] is csv_logger  # the user's loggers stay first, paths unchanged
    assert tracelet.active_run() is run  # a successful fit leaves the run open
    assert run.stop(timeout=30)
    backend = recording_of(run)

    truth = csv_series(Path(csv_logger.log_dir) / "metrics.csv")
    assert set(truth) == {"train_loss_step", "train_loss_epoch", "batch_float", "abs_weight", "val_loss", "epoch"}
    assert len(truth["train_loss_step"]) == 16  # 2 epochs x 8 batches, log_every_n_steps=1
    # tracelet-pytorch's optimizer capture is in the run too: SGD's constant lr once, its hyperparameters as params.
    assert backend.metric_values(OPTIMIZER_LR) == [(0, 0.05)]
    names = {m.name for m in backend.metrics} - {OPTIMIZER_LR}
    captured = {name: backend.metric_values(name) for name in names}
    assert captured == truth  # every row, same step, same value, nothing more, nothing twice

    assert not_optimizer(backend.params) == {"learning_rate": 0.05, "hidden": 4, "optimizer": "sgd"}
    assert backend.params["optimizer/SGD/group0/lr"] == 0.05
    artifacts = {a.name: Path(a.path) for a in backend.of_type(Artifact)}
    kept = {Path(checkpoint.best_model_path), Path(checkpoint.last_model_path)}
    assert artifacts == {f"checkpoints/{path.name}": path for path in kept}
    assert all(path.is_file() for path in artifacts.values())
    assert backend.status is RunStatus.FINISHED


@pytest.mark.parametrize("package", PACKAGES)
def test_an_explicit_logger_is_not_doubled(package: str, tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    run = tracelet_start(backends=["recording"])
    explicit = logger_class(package)()
    fitted = trainer(package, tmp_path, logger=explicit, max_epochs=1)
    fitted.fit(regression_module(package), data())
    assert tracelet_loggers(fitted) == [explicit]
    assert (explicit.name, explicit.version) == (run.name, run.id)
    run.stop(timeout=30)
    steps = [step for step, _ in recording_of(run).metric_values("train_loss_step")]
    assert steps == list(range(8))


def test_the_logger_alone_starts_a_run_and_marks_failures(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    package = PACKAGES[0]
    tracelet_start(backends=["recording"]).stop()  # isolation from the fixture; then no run is active
    assert tracelet.active_run() is None
    logger = logger_class(package)(start_options={"backends": ["recording"]}, log_checkpoints=False)
    fitted = trainer(package, tmp_path, logger=logger, max_epochs=1)
    run = logger.experiment  # what Lightning reads first; it starts the run
    assert tracelet.active_run() is run
    with pytest.raises(RuntimeError, match="training diverged"):
        fitted.fit(regression_module(package, fail_at_step=3), data())
    assert tracelet_loggers(fitted) == [logger]  # attached by its own start: not a second one
    assert tracelet.active_run() is None  # finalize("failed") ended it
    backend = recording_of(run)
    assert backend.status is RunStatus.FAILED
    assert [step for step, _ in backend.metric_values("train_loss_step")] == [0, 1, 2]
    assert backend.of_type(Artifact) == []


def test_logger_false_still_tracks_and_keeps_default_paths(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    package = PACKAGES[0]
    run = tracelet_start(backends=["recording"], config={"lightning": {"log_checkpoints": False}})
    fitted = trainer(package, tmp_path, logger=False, max_epochs=1)
    fitted.fit(regression_module(package), data())
    (attached,) = fitted.loggers
    assert (attached.name, attached.version, attached.save_dir) == ("", "", None)
    assert Path(fitted.checkpoint_callback.dirpath) == tmp_path / "checkpoints"  # as without Tracelet
    run.stop(timeout=30)
    assert len(recording_of(run).metric_values("train_loss_step")) == 8
    assert recording_of(run).of_type(Artifact) == []


def test_tensorboard_logger_values_are_captured_once(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    # With tracelet-pytorch in the same run, Lightning's own TensorBoardLogger writes would be
    # captured a second time; TraceletLogger is their one source.
    pytest.importorskip("tracelet_pytorch")
    package = PACKAGES[0]
    pl = lightning(package)
    run = tracelet_start(backends=["recording"])
    assert {"pytorch", "lightning"} <= set(run.info.plugins)
    tensorboard_logger = pl.loggers.TensorBoardLogger(str(tmp_path / "tb"))
    fitted = trainer(package, tmp_path, logger=tensorboard_logger, max_epochs=1)
    fitted.fit(regression_module(package), data())
    run.stop(timeout=30)
    backend = recording_of(run)

    written = EventAccumulator(tensorboard_logger.log_dir, size_guidance={"scalars": 0})
    written.Reload()
    tags = set(written.Tags()["scalars"]) - {"hp_metric"}  # TensorBoardLogger's placeholder, not a user value
    assert tags == {m.name for m in backend.metrics} - {OPTIMIZER_LR}
    for tag in tags:
        expected = [(e.step, e.value) for e in written.Scalars(tag)]
        assert [(step, float(numpy.float32(value))) for step, value in backend.metric_values(tag)] == expected


def test_stop_restores_trainer_init(tracelet_start: Callable[..., Run]) -> None:
    modules = [lightning(package).trainer.trainer.Trainer for package in PACKAGES]
    originals = [vars(trainer_class)["__init__"] for trainer_class in modules]
    run = tracelet_start(backends=["recording"])
    assert all(vars(c)["__init__"] is not o for c, o in zip(modules, originals, strict=True))
    run = tracelet_start(backends=["recording"])  # restart: patched once again, not stacked
    assert all(vars(c)["__init__"].__wrapped__ is o for c, o in zip(modules, originals, strict=True))
    run.stop()
    assert all(vars(c)["__init__"] is o for c, o in zip(modules, originals, strict=True))
