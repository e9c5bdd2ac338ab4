"""tracelet-wandb: the Weights & Biases backend plugin (entry point ``wandb`` in the ``tracelet`` group).

This module is the plugin's declaration, what the entry point names. Importing
it (what plugin discovery does) imports no wandb: the backend imports it when
a run starts it, on its own worker thread.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_wandb.backend import WandbBackend
from tracelet_wandb.settings import PLUGIN_NAME, WandbSettings

__all__ = ["PLUGIN_NAME", "WandbBackend", "WandbSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``wandb`` backend: batches of up to 1000 records, each batch as few ``run.log`` rows as its steps allow."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.BACKEND,
        factory=WandbBackend,
        settings=WandbSettings,
        description="Weights & Biases (wandb.init, reinit='create_new'; every metric on the Tracelet step axis)",
        max_batch_size=1000,
        # The conformance suite's cases W&B cannot pass, with the reason (reported as skips).
        unsupported={
            "permanent_error": "W&B stores every record core lets through (core refuses a missing artifact file at "
            "the door; tracelet-wandb still raises PermanentError if one vanishes later)",
        },
    )
