"""Tracelet collector ``system``: resource metrics every few seconds and the run's environment once.

Installed means on; ``system.enabled = false`` (``TRACELET_SYSTEM_ENABLED=false``)
turns it off. This module is the plugin's declaration, what the entry point
names: it imports neither psutil nor pynvml, which the collector imports on
its own thread when a run starts.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_system.collector import SystemCollector
from tracelet_system.settings import PLUGIN_NAME, SystemSettings

__all__ = ["PLUGIN_NAME", "SystemCollector", "SystemSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``system`` collector: resource samples every ``interval`` seconds, the environment once."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.COLLECTOR,
        factory=SystemCollector,
        settings=SystemSettings,
        description="CPU, memory, disk, network, process and NVIDIA GPU metrics; the run's environment",
    )
