"""Tracelet for Lightning: ``TraceletLogger``, and a logger added to every ``Trainer`` automatically.

``from tracelet_lightning import TraceletLogger`` gives the logger for
``lightning.pytorch`` (or for ``pytorch_lightning`` when only that one is
installed, or only that one is imported); ``logger_class("pytorch_lightning")``
names the package explicitly. This module is also the plugin's declaration,
what the entry point names. Importing it imports no Lightning: the class is
built on first access.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_lightning.logger import LIGHTNING_PACKAGES, logger_class
from tracelet_lightning.patch import LightningPatcher
from tracelet_lightning.settings import PLUGIN_NAME, LightningSettings

__all__ = [
    "LIGHTNING_PACKAGES",
    "PLUGIN_NAME",
    "LightningPatcher",
    "LightningSettings",
    "TraceletLogger",
    "logger_class",
    "tracelet_plugin_info",
]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``lightning`` framework plugin: it adds a ``TraceletLogger`` to every ``Trainer``."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.FRAMEWORK,
        factory=LightningPatcher,
        settings=LightningSettings,
        description="Adds a TraceletLogger to every Lightning Trainer (lightning.pytorch, pytorch_lightning)",
    )


def _default_package() -> str:
    if "pytorch_lightning" in sys.modules and "lightning.pytorch" not in sys.modules:
        return "pytorch_lightning"
    return "lightning.pytorch" if importlib.util.find_spec("lightning") is not None else "pytorch_lightning"


def __getattr__(name: str) -> Any:
    if name == "TraceletLogger":
        return logger_class(_default_package())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
