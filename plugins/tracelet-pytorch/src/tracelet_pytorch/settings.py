"""Settings of the ``pytorch`` plugin (keys of ``[tool.tracelet.pytorch]``, ``TRACELET_PYTORCH_*``)."""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "TensorBoardSettings"]

PLUGIN_NAME = "pytorch"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.pytorch]``, ``TRACELET_PYTORCH_*``."""


@attrs.frozen
class TensorBoardSettings:
    """Configuration of the ``pytorch`` plugin."""

    upload_logdir: bool = True
    """Upload a writer's log directory as the artifact ``tensorboard/<dir name>`` when it is closed."""
