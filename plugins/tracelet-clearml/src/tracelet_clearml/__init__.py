"""tracelet-clearml: the ClearML backend plugin (entry point ``clearml`` in the ``tracelet`` group).

This module is the plugin's declaration, what the entry point names. Importing
it (what plugin discovery does) imports no clearml: the backend imports it when
a run starts it, on its own worker thread.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_clearml.backend import ClearmlBackend
from tracelet_clearml.settings import PLUGIN_NAME, ClearmlSettings

__all__ = ["PLUGIN_NAME", "ClearmlBackend", "ClearmlSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``clearml`` backend: batches of up to 1000 records into one ClearML task."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.BACKEND,
        factory=ClearmlBackend,
        settings=ClearmlSettings,
        description="ClearML (Task.init with ClearML's automation off, the in-process reporter; metrics as title/series)",
        max_batch_size=1000,
        # The conformance suite's cases ClearML cannot pass, with the reason (reported as skips).
        unsupported={
            "not_finite": "ClearML 2.1.12 stores NaN and +/-inf scalars as a number (0 by default, "
            "Logger.set_reporting_nan_value / set_reporting_inf_value)",
            "permanent_error": "ClearML stores every record core lets through (a vanished artifact file still "
            "raises PermanentError)",
        },
    )
