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
        # Where a user finds each kind of record in the tracker: docs/backends.md is generated from it.
        mapping={
            "metric": "a W&B history key of the same name; metrics of one step share a row",
            "x-axis": (
                "the row key `tracelet/step`, every metric's step metric (`define_metric`); the row's "
                "`_timestamp` is its first metric's time"
            ),
            "media": (
                "images and figures: `wandb.Image` (lossless PNG); texts: a one-cell `wandb.Table`; histograms: "
                "`wandb.Histogram` with the bins as logged"
            ),
            "params": "the run's config, nested at the dots (`optim.lr` -> `config.optim.lr`), values keep their type",
            "tags": (
                "the config entry `tracelet_tags` (`{name: value}`), and the run tag `name:value` when it fits "
                "W&B's 64 characters"
            ),
            "artifacts": "the run's Files tab, `files/<artifact_path>/<name>` (default `artifacts/`), byte for byte",
            "status": "the exit code: `FINISHED` 0, `FAILED` 1, `KILLED` 143 (W&B shows *finished* / *failed*)",
        },
    )
