"""The ClearML backend's settings: ``[tool.tracelet.clearml]``, ``TRACELET_CLEARML_*`` or ``config={"clearml": {...}}``.

Credentials are not settings: ClearML finds them itself (``clearml.conf``,
``CLEARML_API_*``), so they never appear in Tracelet's configuration,
records, logs or spool.
"""

from __future__ import annotations

import attrs

__all__ = ["PLUGIN_NAME", "ClearmlSettings"]

PLUGIN_NAME = "clearml"
"""The plugin's name: its entry point, its settings section ``[tool.tracelet.clearml]``, ``TRACELET_CLEARML_*``."""


@attrs.frozen
class ClearmlSettings:
    """Where and how the ClearML backend logs a run. Unset keys keep ClearML's own resolution."""

    project: str | None = None
    """ClearML project; default: the Tracelet run's project."""
    task_name: str | None = None
    """ClearML task name; default: the Tracelet run's name."""
    task_type: str = "training"
    """ClearML task type (``training``, ``testing``, ``inference``, ...)."""
    tags: str | None = None
    """Comma-separated ClearML task tags (labels) set at ``Task.init``."""
    output_uri: str | None = None
    """Where ClearML stores artifacts and debug samples (``Task.init(output_uri=...)``); default: ClearML's."""
    offline: bool | None = None
    """ClearML's offline mode (``Task.set_offline``); default: ClearML's own (``CLEARML_OFFLINE_MODE``)."""
    task_id: str | None = None
    """Continue this ClearML task (``continue_last_task``) instead of creating one (also: ``tracelet replay``)."""
    max_image_bytes: int = attrs.field(default=1_048_576, validator=attrs.validators.ge(0))
    """The largest debug-sample PNG (image or figure) sent as it is; a larger one is halved until it fits,
    counted and warned about. 1 MiB is nginx's default ``client_max_body_size``, which the proxy in front of
    most ClearML file servers applies: a larger upload fails and ClearML drops the event. ``0``: no limit."""
    automation: bool = False
    """ClearML's own automation (framework patching, argparse, stream capture, resource monitor); off by
    default: Tracelet's plugins capture those, and ClearML's copies would log twice."""
