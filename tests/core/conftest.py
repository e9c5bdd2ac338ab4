"""Shared fixtures for tracelet-core's tests.

The fixture plugins are a real distribution (tests/core/plugins/tracelet-fixtures)
installed by tox; nothing here monkeypatches the plugin registry.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

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


# --- the property-based and stress suites (test_fuzz.py, test_crash_loop.py) -------------------------------------

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,  # an example starts a run, threads and a replay: seconds, not milliseconds
    derandomize=True,  # CI explores the same examples every time; the soak profile explores afresh
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "soak",
    parent=settings.get_profile("ci"),
    max_examples=2_000,
    derandomize=False,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: property-based test (Hypothesis; HYPOTHESIS_PROFILE=soak for a long run)")
    config.addinivalue_line("markers", "crash_loop: a real script SIGKILLed again and again, then `tracelet replay`")
