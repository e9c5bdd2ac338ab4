"""A backend that fails its first calls, then recovers (a server restarting), or refuses some batches for good."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

import tracelet
from tracelet.records import Metric
from tracelet.testing import RecordingBackend


@attrs.frozen
class FlakySettings:
    fail_first: int = 3
    """Routing calls that raise ConnectionError before the backend recovers."""
    fail_start: int = 0
    """Start calls that raise ConnectionError before the backend starts."""
    reject_step: int = -1
    """A metric batch holding this step raises tracelet.PermanentError (every time)."""


class FlakyBackend(RecordingBackend):
    def __init__(self, settings: FlakySettings) -> None:
        super().__init__()
        self.flaky = settings
        self.attempts = 0
        self.start_attempts = 0

    @tracelet.hookimpl
    def tracelet_backend_start(self, run: tracelet.RunInfo) -> tracelet.BackendRunRef:
        self.start_attempts += 1
        if self.start_attempts <= self.flaky.fail_start:
            raise ConnectionError(f"fixture-flaky: start attempt {self.start_attempts} refused")
        return super().tracelet_backend_start(run)

    @tracelet.hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        self.attempts += 1
        if self.attempts <= self.flaky.fail_first:
            raise ConnectionError(f"fixture-flaky: call {self.attempts} refused")
        if any(metric.step == self.flaky.reject_step for metric in metrics):
            raise tracelet.PermanentError(f"fixture-flaky: step {self.flaky.reject_step} is invalid")
        super().tracelet_backend_log_metrics(metrics)


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-flaky",
        kind=tracelet.PluginKind.BACKEND,
        factory=FlakyBackend,
        settings=FlakySettings,
        enabled_by_default=False,
        max_batch_size=50,
    )
