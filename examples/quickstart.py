"""Tracelet quickstart: a small PyTorch training, logged to MLflow (or every installed backend) by one ``tracelet.start()``.

Trains a small MLP to tell two interleaved spirals apart (synthetic data, CPU,
a few seconds) and logs params, a loss per step, accuracies per epoch, weight
histograms, decision-boundary images and the trained model. With only
tracelet-mlflow installed, everything goes to MLflow's default store,
``sqlite:///mlflow.db`` in the working directory. With more backends installed
(tracelet-wandb, -clearml, -aim), the same run reaches each of them: tests/all
runs this file with all four and reads every store back.

Run it from a fresh clone with one command (installs tracelet-core,
tracelet-mlflow and CPU torch into .tox/quickstart, then runs this file)::

    python3 -m pip install tox && python3 -m tox -e quickstart

or, in an environment of your own::

    pip install ./tracelet_core ./plugins/tracelet-mlflow torch && python examples/quickstart.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import tracelet

CONFIG = {
    "data": {"points": 2000, "noise": 0.15, "validation_fraction": 0.2},
    "model": {"hidden": 64, "layers": 2},
    "optimizer": {"name": "adam", "lr": 0.01},
    "epochs": 25,
    "batch_size": 64,
    "seed": 0,
}
IMAGE_SIZE = 96
OUTPUTS = Path(__file__).resolve().parent / "outputs"


def spirals(points: int, noise: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals in [-1, 1]^2, labelled 0 and 1."""
    labels = torch.arange(points) % 2
    radius = torch.rand(points, generator=generator)
    angle = radius * 3.5 * math.pi + labels * math.pi
    features = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    features += noise * 0.2 * torch.randn(points, 2, generator=generator)
    return features, labels


def make_model(hidden: int, layers: int) -> nn.Module:
    blocks: list[nn.Module] = [nn.Linear(2, hidden), nn.ReLU()]
    for _ in range(layers - 1):
        blocks += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(hidden, 2))


def decision_image(model: nn.Module, features: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """An RGB picture of the model's belief over [-1.2, 1.2]^2, with the validation points on top."""
    axis = torch.linspace(-1.2, 1.2, IMAGE_SIZE)
    grid = torch.cartesian_prod(axis, axis.flip(0))  # (x, y) pairs, x outer, y from top to bottom
    with torch.no_grad():
        belief = model(grid).softmax(dim=1)[:, 1].reshape(IMAGE_SIZE, IMAGE_SIZE).T
    image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    image[..., 0] = (255 * belief).numpy()
    image[..., 1] = 60
    image[..., 2] = (255 * (1 - belief)).numpy()
    columns = ((features[:, 0] + 1.2) / 2.4 * (IMAGE_SIZE - 1)).round().long().clamp(0, IMAGE_SIZE - 1)
    rows = ((1.2 - features[:, 1]) / 2.4 * (IMAGE_SIZE - 1)).round().long().clamp(0, IMAGE_SIZE - 1)
    image[rows.numpy(), columns.numpy()] = np.where(labels.numpy()[:, None] == 1, [255, 255, 255], [0, 0, 0])
    return image


def main() -> int:
    began = time.perf_counter()
    torch.set_num_threads(1)  # a model this small trains ~3x faster on one thread than on several
    generator = torch.Generator().manual_seed(CONFIG["seed"])
    torch.manual_seed(CONFIG["seed"])
    features, labels = spirals(CONFIG["data"]["points"], CONFIG["data"]["noise"], generator)
    split = int(len(labels) * (1 - CONFIG["data"]["validation_fraction"]))
    train_x, train_y, val_x, val_y = features[:split], labels[:split], features[split:], labels[split:]
    model = make_model(CONFIG["model"]["hidden"], CONFIG["model"]["layers"])
    optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG["optimizer"]["lr"])
    loss_function = nn.CrossEntropyLoss()

    # The one line Tracelet needs: every installed backend (here MLflow) receives the run.
    run = tracelet.start(project="tracelet-quickstart", name="spirals-mlp")
    run.log_params(CONFIG)
    logged = {"metric points": 0, "images": 0, "histograms": 0}

    step = 0
    for epoch in range(CONFIG["epochs"]):
        model.train()
        order = torch.randperm(split, generator=generator)
        for start in range(0, split, CONFIG["batch_size"]):
            batch = order[start : start + CONFIG["batch_size"]]
            loss = loss_function(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.log_metric("train/loss", loss, step=step)  # a tensor is fine: converted on the caller
            logged["metric points"] += 1
            step += 1
        model.eval()
        with torch.no_grad():
            train_accuracy = (model(train_x).argmax(dim=1) == train_y).float().mean()
            val_logits = model(val_x)
            val_loss = loss_function(val_logits, val_y)
            val_accuracy = (val_logits.argmax(dim=1) == val_y).float().mean()
        run.log_metrics(
            {"train/accuracy": train_accuracy, "val/loss": val_loss, "val/accuracy": val_accuracy, "epoch": epoch}, step=step
        )
        logged["metric points"] += 4
        if epoch % 8 == 0 or epoch == CONFIG["epochs"] - 1:
            run.log_image("decision_boundary", decision_image(model, val_x, val_y), step=step)
            run.log_histogram("weights/first_layer", model[0].weight.detach(), step=step)
            logged["images"] += 1
            logged["histograms"] += 1

    OUTPUTS.mkdir(exist_ok=True)
    model_file = OUTPUTS / "spirals_mlp.pt"
    torch.save(model.state_dict(), model_file)
    run.log_artifact(model_file, name="model/spirals_mlp.pt")
    run.set_tags({"example": "quickstart"})

    delivered_all = run.stop()
    seconds = time.perf_counter() - began
    return report(run, logged, float(val_accuracy), seconds, delivered_all)


def report(run: tracelet.Run, logged: dict[str, int], val_accuracy: float, seconds: float, delivered_all: bool) -> int:
    """Print what each backend received; for MLflow, what it holds, read back from MLflow itself."""
    stats = run.stats()
    points = CONFIG["data"]["points"]
    print(f"\nTrained an MLP on {points} synthetic spiral points in {seconds:.1f} s (validation accuracy {val_accuracy:.1%}).")
    for name, backend in stats.backends.items():
        print(
            f"Tracelet delivered {backend.delivered} records to {name} ({backend.failed} failed, "
            f"{backend.spooled} spooled for `tracelet replay`, {backend.dropped} dropped), run {backend.run_id}"
        )
    mlflow_stats = stats.backends.get("mlflow")
    if mlflow_stats is not None and mlflow_stats.run_id is not None and not mlflow_stats.spooled:
        report_mlflow(run, mlflow_stats.run_id, logged)
    if not delivered_all:
        errors = {name: backend.last_error for name, backend in stats.backends.items() if backend.last_error}
        print(f"\nNot everything was delivered: last errors {errors}", file=sys.stderr)
        return 1
    return 0


def report_mlflow(run: tracelet.Run, run_id: str, logged: dict[str, int]) -> None:
    """Where the run is in MLflow and how to look at it."""
    from mlflow import MlflowClient

    backend = run.get_plugin("mlflow")
    tracking_uri: str = backend.tracking_uri  # type: ignore[attr-defined]
    client = MlflowClient(tracking_uri)
    mlflow_run = client.get_run(run_id)
    experiment = client.get_experiment(mlflow_run.info.experiment_id)
    artifacts = sorted(item.path for item in client.list_artifacts(run_id, "model"))
    images = [item.path for item in client.list_artifacts(run_id, "images") if item.path.endswith(".png")]
    print("\nIn MLflow:")
    print(f"  tracking URI   {tracking_uri}")
    print(f"  experiment     {experiment.name!r} (id {experiment.experiment_id})")
    print(f"  run            {mlflow_run.info.run_name!r} (id {run_id}), status {mlflow_run.info.status}")
    print(f"  params         {len(mlflow_run.data.params)}: {', '.join(sorted(mlflow_run.data.params))}")
    series = sorted(mlflow_run.data.metrics)
    print(f"  metrics        {len(series)} series, {logged['metric points']} logged points: {', '.join(series)}")
    print(f"  images         {len(images)} decision-boundary PNGs (MLflow's image view, one per logged step)")
    print(f"  histograms     {logged['histograms']} of weights/first_layer (JSON under histograms/, summaries as metrics)")
    print(f"  artifact       {', '.join(artifacts)} under {mlflow_run.info.artifact_uri}")
    print("\nLook at it in MLflow's UI (then open http://127.0.0.1:5000):")
    print(f"  mlflow ui --backend-store-uri {tracking_uri}")
    mlflow_command = Path(sys.executable).with_name("mlflow")
    if sys.prefix != sys.base_prefix and mlflow_command.exists():  # in a virtual environment (tox's, for one)
        print(f"  (mlflow is installed in this environment: {mlflow_command})")


if __name__ == "__main__":
    sys.exit(main())
