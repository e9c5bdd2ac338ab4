"""A deterministic script that calls every data-writing SummaryWriter method once or more.

Used by the tests to compare what Tracelet captured with what TensorBoard
wrote, and to compare event files written with and without Tracelet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

WALLTIME = 1_700_000_000.0
SCALAR_STEPS = (0, 1, 2, 5)


def write_everything(writer: Any, logdir: Path) -> None:
    """Call every method the plugin documents on ``writer`` (a fresh SummaryWriter on ``logdir``)."""
    generator = torch.Generator().manual_seed(0)
    for step in SCALAR_STEPS:
        writer.add_scalar("loss", torch.tensor(1.0 / (step + 1)), step, walltime=WALLTIME + step)
        writer.add_scalar("lr", 0.1 * step, step, walltime=WALLTIME + step, new_style=True)
        writer.add_scalars("pair", {"train": float(step), "val": 2.0 * step}, step, walltime=WALLTIME + step)
    writer.add_tensor("one", torch.tensor([3.5]), 3, walltime=WALLTIME)
    writer.add_tensor("many", torch.arange(6, dtype=torch.float32).reshape(2, 3), 3, walltime=WALLTIME)
    writer.add_histogram("weights", torch.randn(1000, generator=generator), 4, walltime=WALLTIME)
    writer.add_histogram_raw(
        "raw",
        min=0.0,
        max=3.0,
        num=6,
        sum=9.0,
        sum_squares=19.0,
        bucket_limits=[1.0, 2.0, 3.0],
        bucket_counts=[1, 2, 3],
        global_step=5,
        walltime=WALLTIME,
    )
    writer.add_image("image", torch.rand(3, 8, 6, generator=generator), 6, walltime=WALLTIME)
    writer.add_image("grey", np.arange(48, dtype=np.uint8).reshape(8, 6), 6, walltime=WALLTIME, dataformats="HW")
    writer.add_images("batch", torch.rand(4, 3, 5, 5, generator=generator), 7, walltime=WALLTIME)
    writer.add_image_with_boxes(
        "boxes", torch.rand(3, 16, 16, generator=generator), torch.tensor([[1.0, 1.0, 8.0, 8.0]]), 8, walltime=WALLTIME
    )
    figure = plt.figure(figsize=(1, 1), dpi=20)
    plt.plot([0, 1], [1, 0])
    writer.add_figure("figure", figure, 9, walltime=WALLTIME)
    writer.add_video("video", torch.rand(1, 2, 3, 4, 4, generator=generator), 10, walltime=WALLTIME)
    writer.add_audio("audio", torch.linspace(-1, 1, 800).unsqueeze(0), 11, sample_rate=8000, walltime=WALLTIME)
    writer.add_text("note", "hello *tracelet*", 12, walltime=WALLTIME)
    writer.add_graph(torch.nn.Linear(3, 2), torch.zeros(1, 3))
    writer.add_embedding(torch.rand(5, 4, generator=generator), metadata=list("abcde"), global_step=13, tag="emb")
    labels = torch.tensor([0, 1, 1, 0, 1])
    writer.add_pr_curve("pr", labels, torch.tensor([0.1, 0.9, 0.8, 0.3, 0.4]), 14, walltime=WALLTIME)
    writer.add_pr_curve_raw(
        "pr_raw", [5, 3], [2, 1], [0, 1], [0, 2], [1.0, 0.75], [0.71, 0.6], 15, num_thresholds=2, walltime=WALLTIME
    )
    writer.add_custom_scalars({"group": {"pair": ["Multiline", ["pair/train", "pair/val"]]}})
    vertices = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    writer.add_mesh("mesh", vertices=vertices, faces=torch.tensor([[[0, 1, 2]]]), global_step=16)
    writer.add_hparams({"lr": 0.01, "optimizer": "sgd", "layers": 3}, {"hparam/accuracy": 0.75}, run_name="hp", global_step=17)
