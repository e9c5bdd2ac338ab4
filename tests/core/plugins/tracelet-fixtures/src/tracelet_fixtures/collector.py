"""A collector: one param and tag at start, then a counter metric every ``interval`` seconds."""

from __future__ import annotations

import threading
import time

import attrs

import tracelet


@attrs.frozen
class CollectorSettings:
    interval: float = 0.05
    fail_sample: bool = False


class CountingCollector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.settings = settings
        self.samples = 0
        self.stopped = False
        self.thread_name: str | None = None

    @tracelet.hookimpl
    def tracelet_collect_start(self, run: tracelet.RunInfo) -> list[object]:
        self.thread_name = threading.current_thread().name
        return [tracelet.Param("fixture.run_project", run.project), tracelet.Tag("fixture.collected", "yes")]

    @tracelet.hookimpl
    def tracelet_collect_interval(self) -> float:
        return self.settings.interval

    @tracelet.hookimpl
    def tracelet_collect_sample(self) -> list[tracelet.Metric]:
        if self.settings.fail_sample:
            raise RuntimeError("fixture-collector: sensor unavailable")
        self.samples += 1
        return [tracelet.Metric("fixture/samples", float(self.samples), self.samples, time.time())]

    @tracelet.hookimpl
    def tracelet_collect_stop(self) -> None:
        self.stopped = True


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-collector",
        kind=tracelet.PluginKind.COLLECTOR,
        factory=CountingCollector,
        settings=CollectorSettings,
        enabled_by_default=False,
    )
