"""tracelet-mlflow: the MLflow backend plugin (entry point ``mlflow`` in the ``tracelet`` group).

This module is the plugin's declaration, what the entry point names. Importing
it (what plugin discovery does) imports no mlflow: the backend imports it when
a run starts it, on its own worker thread.
"""

from __future__ import annotations

from tracelet.plugin import PluginInfo, PluginKind, hookimpl
from tracelet_mlflow.backend import MlflowBackend
from tracelet_mlflow.settings import PLUGIN_NAME, MlflowSettings

__all__ = ["PLUGIN_NAME", "MlflowBackend", "MlflowSettings", "tracelet_plugin_info"]


@hookimpl
def tracelet_plugin_info() -> PluginInfo:
    """Declare the ``mlflow`` backend: batches of up to 1000 records, MLflow's ``log_batch`` limit."""
    return PluginInfo(
        name=PLUGIN_NAME,
        kind=PluginKind.BACKEND,
        factory=MlflowBackend,
        settings=MlflowSettings,
        description="MLflow tracking (MlflowClient; default store sqlite:///mlflow.db)",
        max_batch_size=1000,
        # The conformance suite's cases MLflow cannot pass, with the reason (reported as skips).
        unsupported={
            "permanent_error": "MLflow stores every record core lets through (core refuses a missing "
            "artifact file at the door; tracelet-mlflow still raises PermanentError if one vanishes later)",
        },
        # Where a user finds each kind of record in the tracker: docs/backends.md is generated from it.
        mapping={
            "metric": (
                "an MLflow metric of the same name (`log_batch`); MLflow's key rules may rename one, counted in `adjustments`"
            ),
            "x-axis": "MLflow's step is the Tracelet step; the timestamp is kept in integer milliseconds (rounded)",
            "media": (
                "images and figures: MLflow's image view (`images/<key>+step+<step>+...png`, lossless); texts: "
                "`text/<name>/step-<step>.txt`; histograms: `histograms/<name>/step-<step>.json` plus metrics "
                "`<name>/min`, `/max`, `/mean`, `/std`, `/count`"
            ),
            "params": (
                "MLflow params, `str(value)`, nested names with dots; a changed value is `<key>.v2`, `.v3`; over "
                "6000 characters also `params/<key>.txt`"
            ),
            "tags": (
                "MLflow tags; `git.*` and `env.script` also as MLflow's `mlflow.source.*`; Tracelet's "
                "`tracelet.version`, `.plugins`, `.run_id`"
            ),
            "artifacts": "the run's artifacts at `<artifact_path>/<name>`, byte for byte",
            "status": "the run's status: `FINISHED`, `FAILED`, `KILLED` (`set_terminated`)",
        },
    )
