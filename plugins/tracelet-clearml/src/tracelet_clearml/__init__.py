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
        # Where a user finds each kind of record in the tracker: docs/backends.md is generated from it.
        mapping={
            "metric": (
                "a scalar plot: the title is the name up to its first `/`, the series the rest (`train/loss` -> "
                "`train` / `loss`; `loss` -> `loss` / `loss`)"
            ),
            "x-axis": "the iteration is the Tracelet step; the event keeps its timestamp in milliseconds",
            "media": (
                "images, figures and texts: debug samples at their step (`.png` lossless, `.txt`); histograms: a "
                "bar plot at its step, exact edges in its layout (`tracelet.edges`)"
            ),
            "params": "hyperparameters, section `General`, full dotted names",
            "tags": "user properties `name: value` (an empty value also a task tag); Tracelet's `tracelet.*` too",
            "artifacts": "task artifacts (`upload_artifact`); a directory's files as `<name>/<relative path>`",
            "status": "the user property `tracelet.status`; online also completed / failed / stopped (`mark_*`)",
        },
    )
