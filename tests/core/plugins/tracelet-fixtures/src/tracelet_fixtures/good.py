"""A well-behaved third-party backend, enabled by default like any installed backend."""

from __future__ import annotations

import tracelet
from tracelet.testing import RecordingBackend, RecordingSettings


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-good",
        kind=tracelet.PluginKind.BACKEND,
        factory=RecordingBackend,
        settings=RecordingSettings,
        description="records in memory",
        max_batch_size=100,
    )
