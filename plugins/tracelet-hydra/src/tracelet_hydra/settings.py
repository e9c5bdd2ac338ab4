"""Settings of the ``hydra`` plugin (keys of ``[tool.tracelet.hydra]``, ``TRACELET_HYDRA_*``)."""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "HydraSettings"]

PLUGIN_NAME = "hydra"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.hydra]``, ``TRACELET_HYDRA_*``."""


@attrs.frozen
class HydraSettings:
    """Configuration of the ``hydra`` plugin."""

    capture_jobs: bool = True
    """Capture each Hydra job of the run: its composed config as params, its overrides and identity as tags."""
    artifacts: bool = True
    """Upload the job's ``.hydra/`` files (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``), secrets masked."""
