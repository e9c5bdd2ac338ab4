"""Tracelet's Hydra capture: a ``@hydra.main`` job's composed config reaches every backend.

Installing ``tracelet-hydra`` is all it takes: a run started inside a Hydra
job (or active when one starts) logs the job's config as params, its
overrides as a tag and its ``.hydra/`` files as artifacts, and OmegaConf
objects passed to ``tracelet.log_params`` are flattened like the job's
config. This module is the plugin's declaration, what the entry point names;
importing it imports neither Hydra nor OmegaConf.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_hydra.patch import HydraPatcher, config_values
from tracelet_hydra.settings import PLUGIN_NAME, HydraSettings

__all__ = ["PLUGIN_NAME", "HydraPatcher", "HydraSettings", "config_values", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``hydra`` framework plugin: Hydra jobs' configs and OmegaConf objects become params."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.FRAMEWORK,
        factory=HydraPatcher,
        settings=HydraSettings,
        description="Captures a Hydra job's composed config, overrides and .hydra files; flattens OmegaConf params",
    )
