"""Tracelet collector ``git``: the commit, branch, remote and uncommitted diff of the run's code.

Installed means on; ``git.enabled = false`` (``TRACELET_GIT_ENABLED=false``)
turns it off. This module is the plugin's declaration, what the entry point
names: it does not import gitpython, which the collector imports on its own
thread when a run starts.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_git.collector import GitCollector
from tracelet_git.settings import PLUGIN_NAME, GitSettings

__all__ = ["PLUGIN_NAME", "GitCollector", "GitSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``git`` collector: one reading of the repository at run start."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.COLLECTOR,
        factory=GitCollector,
        settings=GitSettings,
        description="Git commit, branch, dirty flag, remote URL and uncommitted diff at run start",
    )
