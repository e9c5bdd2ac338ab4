"""Tracelet's PyTorch plugin: TensorBoard capture, optimizer capture and ``tracelet.watch(model)``.

Installing ``tracelet-pytorch`` is all it takes: ``tracelet.start()`` patches
``torch.utils.tensorboard`` (and ``tensorboardX``) when they are imported,
registers one global optimizer step hook that logs each optimizer's
hyperparameters and learning-rate curve, and lets ``tracelet.watch(model)``
log histograms of a ``torch.nn.Module``; ``stop()`` undoes all of it. This
module is the plugin's declaration, what the entry point names; importing it
imports neither torch nor TensorBoard.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_pytorch.patch import PyTorchPatcher
from tracelet_pytorch.settings import PLUGIN_NAME, PyTorchSettings

__all__ = ["PLUGIN_NAME", "PyTorchPatcher", "PyTorchSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``pytorch`` framework plugin: TensorBoard and optimizer capture, and ``tracelet.watch``."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.FRAMEWORK,
        factory=PyTorchPatcher,
        settings=PyTorchSettings,
        description="Captures TensorBoard SummaryWriter calls and optimizer hyperparameters; tracelet.watch(model)",
    )
