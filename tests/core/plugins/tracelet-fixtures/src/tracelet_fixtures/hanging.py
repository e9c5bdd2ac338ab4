"""A backend whose routing hooks block until the test calls ``release()`` (a dead server)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import attrs

import tracelet
from tracelet.records import Record

_released = threading.Event()


def release() -> None:
    """Unblock every hanging hook (tests call it at teardown so no thread outlives them)."""
    _released.set()


def rearm() -> None:
    _released.clear()


@attrs.frozen
class HangingSettings:
    hang: bool = True
    """False: the server is back (``tracelet replay`` in another process delivers to it)."""


class HangingBackend:
    def __init__(self, settings: HangingSettings) -> None:
        self.settings = settings
        self.entered = threading.Event()
        self.records: list[Record] = []

    @tracelet.hookimpl
    def tracelet_backend_check(self) -> str:
        """``tracelet doctor``'s check: no answer (whatever its timeout) while the server hangs."""
        if self.settings.hang:
            _released.wait()
        return "fixture-hanging: back"

    @tracelet.hookimpl
    def tracelet_backend_log_metrics(self, metrics: Sequence[Record]) -> None:
        self.entered.set()
        if self.settings.hang:
            _released.wait()
        self.records.extend(metrics)


@tracelet.hookimpl
def tracelet_plugin_info() -> tracelet.PluginInfo:
    return tracelet.PluginInfo(
        name="fixture-hanging",
        kind=tracelet.PluginKind.BACKEND,
        factory=HangingBackend,
        settings=HangingSettings,
        enabled_by_default=False,
    )
