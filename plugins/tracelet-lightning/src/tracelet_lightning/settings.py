"""Settings of the ``lightning`` plugin (keys of ``[tool.tracelet.lightning]``, ``TRACELET_LIGHTNING_*``)."""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "LightningSettings"]

PLUGIN_NAME = "lightning"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.lightning]``, ``TRACELET_LIGHTNING_*``."""


@attrs.frozen
class LightningSettings:
    """Configuration of the ``lightning`` plugin."""

    auto_attach: bool = True
    """Add a ``TraceletLogger`` to every ``Trainer`` created while a run is active."""
    log_checkpoints: bool = True
    """Upload the checkpoints ``ModelCheckpoint`` kept, as artifacts ``checkpoints/<file>``."""
    capture_cli: bool = True
    """``LightningCLI``: log the parsed config as params and the ``config.yaml`` its ``SaveConfigCallback``
    writes as the artifact ``lightning/config.yaml`` (secrets masked)."""
