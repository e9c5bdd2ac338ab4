"""Helpers for the tracelet-system tests: real runs with the recording backend and a short interval."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tracelet.run import Run
from tracelet.testing import RecordingBackend

INTERVAL = 0.2


def _wait_for_samples(run: Run, count: int, timeout: float = 15.0) -> RecordingBackend:
    """Flush until the recording backend has ``count`` samples (steps 0..count-1) of the system collector."""
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.flush(5)
        if len(backend.metric_values("system/memory/percent")) >= count:
            return backend
        time.sleep(INTERVAL / 2)
    raise AssertionError(f"fewer than {count} samples in {timeout} s: {backend.metric_values('system/memory/percent')}")


@pytest.fixture
def wait_for_samples() -> Callable[..., RecordingBackend]:
    """``wait_for_samples(run, count)``: flush until ``count`` samples arrived; the recording backend."""
    return _wait_for_samples


@pytest.fixture
def start_system(tracelet_start: Callable[..., Run]) -> Callable[..., Run]:
    """Start a run delivering to the recording backend, the system collector sampling every 0.2 s."""

    def start(**settings: object) -> Run:
        return tracelet_start(backends=["recording"], config={"system": {"interval": INTERVAL, **settings}})

    return start


@pytest.fixture
def tracelet_plugins() -> list[str]:
    """The plugins the ``tracelet_start`` fixture loads besides the recording backend."""
    return ["system"]
