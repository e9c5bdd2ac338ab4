"""Tracelet collector ``system``: resource metrics every few seconds and the run's environment once.

Installed means on; ``system.enabled = false`` (``TRACELET_SYSTEM_ENABLED=false``)
turns it off. This module is the entry point: it imports neither psutil nor
pynvml, which the collector imports on its own thread when a run starts.
"""

from __future__ import annotations

import tracelet
from tracelet_system.collector import SystemCollector
from tracelet_system.settings import SystemSettings

__all__ = ["SystemCollector", "SystemSettings", "tracelet_plugin_info"]


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="system",
        kind=tracelet.PluginKind.COLLECTOR,
        factory=SystemCollector,
        settings=SystemSettings,
        description="CPU, memory, disk, network, process and NVIDIA GPU metrics; the run's environment",
    )
