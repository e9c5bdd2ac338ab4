"""Settings of the ``pytorch`` plugin (keys of ``[tool.tracelet.pytorch]``, ``TRACELET_PYTORCH_*``)."""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "PyTorchSettings"]

PLUGIN_NAME = "pytorch"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.pytorch]``, ``TRACELET_PYTORCH_*``."""


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


@attrs.frozen
class PyTorchSettings:
    """Configuration of the ``pytorch`` plugin."""

    upload_logdir: bool = True
    """Upload a TensorBoard writer's log directory as the artifact ``tensorboard/<dir name>`` when it is closed."""
    optimizers: bool = True
    """Log each optimizer's hyperparameters as params at its first step, and its learning rate (and every
    hyperparameter that changes) as metrics: one global step hook, no callback."""
    watch_bins: int = attrs.field(default=64, validator=_positive)
    """Bins of the histograms ``tracelet.watch()`` logs."""
