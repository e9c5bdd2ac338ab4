"""A plain PyTorch loop that writes to TensorBoard; one line adds Tracelet.

With tracelet-pytorch installed, every SummaryWriter call below also reaches
every configured Tracelet backend (MLflow, W&B, ...). Nothing else changes:
TensorBoard's own event files are written exactly as before.

    pip install tracelet-core tracelet-pytorch tracelet-mlflow
    python examples/tensorboard_example.py
"""

from __future__ import annotations

import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet

tracelet.start(project="examples", name="tensorboard")  # the only Tracelet line

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
features = torch.randn(256, 8)
targets = features @ torch.randn(8, 1)

with SummaryWriter("examples/outputs/tensorboard") as writer:
    writer.add_hparams({"lr": 0.05, "batch_size": 32}, {"hparam/final_loss": 0.0}, run_name="hparams")
    for epoch in range(20):
        for start in range(0, len(features), 32):
            batch, target = features[start : start + 32], targets[start : start + 32]
            loss = torch.nn.functional.mse_loss(model(batch), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        writer.add_scalar("train/loss", loss, epoch)
        writer.add_scalars("weights", {"mean": model.weight.mean(), "std": model.weight.std()}, epoch)
        writer.add_histogram("weights/histogram", model.weight, epoch)
    writer.add_text("notes", "linear regression on synthetic data", epoch)
