"""Tracelet: one ``tracelet.start()``, every experiment tracker.

``import tracelet`` imports no backend or framework library; plugins import
theirs when a run starts them.
"""

from typing import TYPE_CHECKING, Any

from tracelet._version import __version__
from tracelet.api import (
    active_run,
    flush,
    log_artifact,
    log_figure,
    log_histogram,
    log_image,
    log_metric,
    log_metrics,
    log_params,
    log_text,
    set_tags,
    start,
    stop,
    unwatch,
    watch,
)
from tracelet.errors import ConfigError, PermanentError, PluginError, TraceletError
from tracelet.hookspecs import hookimpl
from tracelet.info import BackendRunRef, ParentRef, PluginInfo, PluginKind, RunInfo
from tracelet.plugins import register_plugin, unregister_plugin
from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, RunStatus, Tag, Text
from tracelet.run import Run, RunStats

if TYPE_CHECKING:
    from tracelet.worker import BackendStats

__all__ = [
    "Artifact",
    "BackendRunRef",
    "BackendStats",
    "ConfigError",
    "Figure",
    "Histogram",
    "Image",
    "Metric",
    "Param",
    "ParentRef",
    "PermanentError",
    "PluginError",
    "PluginInfo",
    "PluginKind",
    "Run",
    "RunInfo",
    "RunStats",
    "RunStatus",
    "Tag",
    "Text",
    "TraceletError",
    "__version__",
    "active_run",
    "flush",
    "hookimpl",
    "log_artifact",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_text",
    "register_plugin",
    "set_tags",
    "start",
    "stop",
    "unregister_plugin",
    "unwatch",
    "watch",
]


def __getattr__(name: str) -> Any:
    # BackendStats lives with the dispatcher, which `import tracelet` does not load (see tracelet.api).
    if name == "BackendStats":
        from tracelet.worker import BackendStats

        return BackendStats
    raise AttributeError(f"module 'tracelet' has no attribute {name!r}")
