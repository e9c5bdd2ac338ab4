"""Tracelet collector ``git``: the commit, branch, remote and uncommitted diff of the run's code.

Installed means on; ``git.enabled = false`` (``TRACELET_GIT_ENABLED=false``)
turns it off. This module is the entry point: it does not import gitpython,
which the collector imports on its own thread when a run starts.
"""

from __future__ import annotations

import tracelet
from tracelet_git.collector import GitCollector
from tracelet_git.settings import GitSettings

__all__ = ["GitCollector", "GitSettings", "tracelet_plugin_info"]


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="git",
        kind=tracelet.PluginKind.COLLECTOR,
        factory=GitCollector,
        settings=GitSettings,
        description="Git commit, branch, dirty flag, remote URL and uncommitted diff at run start",
    )
