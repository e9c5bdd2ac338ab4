"""Tracelet's argparse capture: the arguments a script parsed become params of every backend.

Installing ``tracelet-argparse`` is all it takes: while a run is active,
``ArgumentParser.parse_args`` and ``parse_known_args`` (and the intermixed
variants) log the namespace they return as params ``args.<dest>`` and the
command line as the tag ``args.command_line``; namespaces parsed before
``tracelet.start()`` are picked up at start. This module is the plugin's
declaration, what the entry point names.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_argparse.patch import ArgparsePatcher
from tracelet_argparse.settings import PLUGIN_NAME, ArgparseSettings

__all__ = ["PLUGIN_NAME", "ArgparsePatcher", "ArgparseSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``argparse`` framework plugin: parsed arguments become params while a run is active."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.FRAMEWORK,
        factory=ArgparsePatcher,
        settings=ArgparseSettings,
        description="Captures what argparse parsed as params args.<dest>, the command line as a tag",
    )
