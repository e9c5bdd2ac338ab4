"""Tracelet's TensorBoard capture: ``SummaryWriter`` calls reach every Tracelet backend.

Installing ``tracelet-pytorch`` is all it takes: ``tracelet.start()`` patches
``torch.utils.tensorboard`` (and ``tensorboardX``) when they are imported,
and ``stop()`` restores them. This module is the plugin's declaration, what
the entry point names; importing it imports neither torch nor TensorBoard.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_pytorch.patch import TensorBoardPatcher
from tracelet_pytorch.settings import PLUGIN_NAME, TensorBoardSettings

__all__ = ["PLUGIN_NAME", "TensorBoardPatcher", "TensorBoardSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``pytorch`` framework plugin: it patches TensorBoard's writers while a run is active."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.FRAMEWORK,
        factory=TensorBoardPatcher,
        settings=TensorBoardSettings,
        description="Captures TensorBoard SummaryWriter calls (torch.utils.tensorboard, tensorboardX)",
    )
