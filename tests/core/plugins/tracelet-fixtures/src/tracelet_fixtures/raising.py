"""A backend that raises in every hook after starting."""

from __future__ import annotations

from collections.abc import Sequence

import tracelet
from tracelet.records import Record


class RaisingBackend:
    def __init__(self, settings: None) -> None:
        self.attempts = 0

    @tracelet.hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Record]) -> None:
        self.attempts += 1
        raise RuntimeError(f"fixture-raising: cannot log {len(metrics)} metrics")

    @tracelet.hookimpl
    def tracelet_backend_log_params(self, params: Sequence[Record]) -> None:
        raise RuntimeError("fixture-raising: cannot log params")

    @tracelet.hookimpl
    def tracelet_backend_flush(self) -> None:
        raise RuntimeError("fixture-raising: cannot flush")

    @tracelet.hookimpl
    def tracelet_backend_end(self, status: tracelet.RunStatus) -> None:
        raise RuntimeError("fixture-raising: cannot end")


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-raising", kind=tracelet.PluginKind.BACKEND, factory=RaisingBackend, enabled_by_default=False
    )
