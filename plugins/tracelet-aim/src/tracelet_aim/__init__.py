"""tracelet-aim: the AIM backend plugin (entry point ``aim`` in the ``tracelet`` group).

This module is the plugin's declaration, what the entry point names. Importing
it (what plugin discovery does) imports no aim: the backend imports it when a
run starts it, on its own worker thread.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_aim.backend import AimBackend
from tracelet_aim.settings import PLUGIN_NAME, AimSettings

__all__ = ["PLUGIN_NAME", "AimBackend", "AimSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``aim`` backend: batches of up to 1000 records."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.BACKEND,
        factory=AimBackend,
        settings=AimSettings,
        description="AIM (aim.Run; default repository: .aim in the working directory, or aim://host:port)",
        max_batch_size=1000,
        # The conformance suite's cases AIM cannot pass, with the reason (reported as skips).
        unsupported={
            "permanent_error": "AIM stores every single record core lets through (an int param beyond int64 is kept "
            "as its decimal text); tracelet-aim raises PermanentError for a name already used by another kind of "
            "record, or an artifact that vanished",
        },
        # Where a user finds each kind of record in the tracker: docs/backends.md is generated from it.
        mapping={
            "metric": (
                'an AIM sequence: a `train/`, `val/` or `test/` prefix becomes the context `{"subset": ...}` '
                "(`train/loss` -> `loss`, subset `train`); other names as they are"
            ),
            "x-axis": (
                "AIM's step is the Tracelet step; the time is the record's own; a step logged again goes to a `repeat` context"
            ),
            "media": (
                "images and figures: `aim.Image` (lossless PNG); texts: `aim.Text`; histograms: "
                "`aim.Distribution` (exact bins also as JSON text when not uniform)"
            ),
            "params": '`run["hparams"]`, nested at the dots, values keep their type',
            "tags": '`run["tags"]` (`{name: value}`), and the label `name:value` for the user\'s own tags',
            "artifacts": "`Run.log_artifact`: `<artifacts_uri>/<run hash>/<name>`, listed by `run.artifacts`",
            "status": '`run["tracelet"]["status"]` (AIM has no failed state); the run is closed and indexed',
        },
    )
