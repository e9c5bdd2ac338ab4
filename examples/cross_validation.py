"""3-fold cross-validation with nested runs: one parent run, one child run per fold.

Fits a logistic regression (numpy, a few hundred milliseconds) on a synthetic
two-class problem, once per fold. Each fold is a child run
(``run.child(name="fold-N")``): inside its ``with`` block the module-level
``tracelet.log_metric`` goes to the fold, which has its own loss curve and
validation accuracy; the parent run holds the settings and the folds' mean.
Every backend shows the folds under the parent its own way: MLflow as nested
runs (``mlflow.parentRunId``), W&B as a group named after the parent, ClearML
as child tasks, AIM in the parent's experiment with ``tracelet.parent_run_id``.

Run it with tracelet-core, tracelet-mlflow and numpy installed::

    pip install ./tracelet_core ./plugins/tracelet-mlflow numpy && python examples/cross_validation.py

then ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` shows the parent
run with its three folds nested under it.
"""

from __future__ import annotations

import sys

import numpy as np

import tracelet

CONFIG = {"folds": 3, "points": 600, "features": 8, "epochs": 30, "lr": 0.5, "seed": 0}


def make_data(points: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points around two centres, labelled 0 and 1, shuffled."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(0, 2, points)
    centres = np.where(labels[:, None] == 1, 0.6, -0.6)
    return centres + generator.normal(size=(points, features)), labels


def train_fold(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> float:
    """Gradient descent on the logistic loss, logging to the active run; returns the validation accuracy."""
    weights = np.zeros(train_x.shape[1])
    bias = 0.0
    for epoch in range(CONFIG["epochs"]):
        probability = 1.0 / (1.0 + np.exp(-(train_x @ weights + bias)))
        loss = -np.mean(train_y * np.log(probability + 1e-12) + (1 - train_y) * np.log(1 - probability + 1e-12))
        gradient = probability - train_y
        weights -= CONFIG["lr"] * train_x.T @ gradient / len(train_y)
        bias -= CONFIG["lr"] * float(gradient.mean())
        tracelet.log_metric("train/loss", float(loss), step=epoch)  # the fold's run: the active run in its `with`
    accuracy = float(np.mean(((val_x @ weights + bias) > 0) == val_y))
    tracelet.log_metric("val/accuracy", accuracy, step=CONFIG["epochs"])
    return accuracy


def main() -> dict[str, float]:
    """Run the cross-validation; returns each fold's validation accuracy by fold run name."""
    features, labels = make_data(CONFIG["points"], CONFIG["features"], CONFIG["seed"])
    folds = np.array_split(np.arange(len(labels)), CONFIG["folds"])

    run = tracelet.start(project="tracelet-examples", name="cross-validation")
    run.log_params(CONFIG)
    scores: dict[str, float] = {}
    for index, validation in enumerate(folds):
        training = np.concatenate([fold for other, fold in enumerate(folds) if other != index])
        with run.child(name=f"fold-{index + 1}") as fold:  # stopped (its backends' runs ended) when the block ends
            fold.log_params({"fold": index + 1, "train_points": len(training), "val_points": len(validation)})
            scores[fold.name] = train_fold(features[training], labels[training], features[validation], labels[validation])
    accuracies = list(scores.values())
    run.log_metrics({"cv/mean_accuracy": float(np.mean(accuracies)), "cv/std_accuracy": float(np.std(accuracies))}, step=0)
    delivered_all = run.stop()

    print(f"cross-validation {run.name!r} ({run.id}): mean validation accuracy {np.mean(accuracies):.3f}")
    for name, accuracy in scores.items():
        print(f"  {name}: {accuracy:.3f}")
    if not delivered_all:
        print("not everything was delivered; see run.stats()", file=sys.stderr)
    return scores


if __name__ == "__main__":
    main()
