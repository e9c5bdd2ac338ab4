"""A backend slow to start (1 s, like AIM's 1.25 s) and slow per batch (50 ms)."""

from __future__ import annotations

import attrs

import tracelet
from tracelet.testing import RecordingBackend


@attrs.frozen
class SlowSettings:
    start_delay: float = 1.0
    batch_delay: float = 0.05


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-slow",
        kind=tracelet.PluginKind.BACKEND,
        factory=RecordingBackend,
        settings=SlowSettings,
        enabled_by_default=False,
    )
