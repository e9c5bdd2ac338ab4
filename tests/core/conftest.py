"""Shared fixtures for tracelet-core's tests.

The fixture plugins are a real distribution (tests/core/plugins/tracelet-fixtures)
installed by tox; nothing here monkeypatches the plugin registry.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import tracelet
from tracelet_fixtures import hanging


@pytest.fixture(autouse=True)
def _no_leaked_run() -> Iterator[None]:
    """Every test starts and ends with no active run, and no hanging backend left blocked."""
    assert tracelet.active_run() is None, "a previous test leaked an active run"
    hanging.rearm()
    yield
    hanging.release()
    run = tracelet.active_run()
    if run is not None:
        run.stop(timeout=5)


@pytest.fixture
def tracelet_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the ``tracelet`` logger at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="tracelet")
    return caplog
