"""Tracelet's TensorBoard capture: ``SummaryWriter`` calls reach every Tracelet backend.

Installing ``tracelet-pytorch`` is all it takes: ``tracelet.start()`` patches
``torch.utils.tensorboard`` (and ``tensorboardX``) when they are imported,
and ``stop()`` restores them. Importing this package imports neither torch
nor TensorBoard.
"""

from tracelet_pytorch.plugin import TensorBoardPatcher, TensorBoardSettings

__all__ = ["TensorBoardPatcher", "TensorBoardSettings"]
