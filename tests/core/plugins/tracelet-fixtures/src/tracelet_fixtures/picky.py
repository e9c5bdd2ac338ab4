"""A backend that cannot store some records: poison metrics, refused ones, missing artifacts, or none (it is down).

It fails on the records themselves, every time, while it takes every other
record: what ``tracelet replay`` must isolate instead of being blocked by.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import attrs

import tracelet
from tracelet.records import Artifact, Metric
from tracelet.testing import RecordingBackend


@attrs.frozen
class PickySettings:
    poison_steps: tuple[int, ...] = ()
    """A metric batch holding one of these steps raises ConnectionError, every time (a transient-looking error)."""
    refuse_steps: tuple[int, ...] = ()
    """A metric batch holding one of these steps raises tracelet.PermanentError."""
    down: bool = False
    """Every routing call raises ConnectionError: the server is down."""


class PickyBackend(RecordingBackend):
    def __init__(self, settings: PickySettings) -> None:
        super().__init__()
        self.picky = settings
        self.attempts = 0
        """Routing calls made, successful or not."""

    @tracelet.hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Metric]) -> None:
        self._check()
        for metric in metrics:
            if metric.step in self.picky.poison_steps:
                raise ConnectionError(f"fixture-picky: cannot store step {metric.step}")
            if metric.step in self.picky.refuse_steps:
                raise tracelet.PermanentError(f"fixture-picky: step {metric.step} is invalid")
        super().tracelet_backend_log_metrics(metrics)

    @tracelet.hookimpl
    def tracelet_backend_log_params(self, params: Sequence[tracelet.Param]) -> None:
        self._check()
        super().tracelet_backend_log_params(params)

    @tracelet.hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        self._check()
        for artifact in artifacts:
            if not os.path.exists(artifact.path):
                raise tracelet.PermanentError(f"fixture-picky: {artifact.path} does not exist")
        super().tracelet_backend_log_artifacts(artifacts)

    @tracelet.hookimpl
    def tracelet_backend_check(self, timeout: float) -> str:
        """``tracelet doctor``'s check: the server answers unless ``down``."""
        if self.picky.down:
            raise ConnectionError("fixture-picky: connection refused")
        return f"fixture-picky: answers (asked within {timeout:g} s)"

    def _check(self) -> None:
        self.attempts += 1
        if self.picky.down:
            raise ConnectionError("fixture-picky: connection refused")


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-picky",
        kind=tracelet.PluginKind.BACKEND,
        factory=PickyBackend,
        settings=PickySettings,
        enabled_by_default=False,
        max_batch_size=50,
    )
