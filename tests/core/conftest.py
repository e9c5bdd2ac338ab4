"""Shared fixtures for tracelet-core's tests.

The fixture plugins are a real distribution (tests/core/plugins/tracelet-fixtures)
installed by tox; nothing here monkeypatches the plugin registry.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

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


# --- child processes (test_processes.py, test_offline_resume.py) ---------------------------------------------------

CHILD_PREAMBLE = (
    "import faulthandler, json, os, signal, sys, time\n"
    # The watchdog is a native thread that inherits the creating thread's signal mask: created with SIGTERM
    # blocked, the kernel cannot hand it the test's SIGTERM (Python would then run the handler only once the
    # main thread's sleep ended: a flaky test).
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
    "faulthandler.dump_traceback_later(60, exit=True)  # a hung child says where, instead of hanging the test\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})\n"
    "import tracelet\n"
)


@pytest.fixture
def child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -c script`` in ``tmp_path``, in a process group of its own; killed at teardown."""
    monkeypatch.chdir(tmp_path)
    started: list[subprocess.Popen[str]] = []

    def start(script: str, **env: str) -> subprocess.Popen[str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACELET_") or "PLUGINS" in k}
        environment.update(TRACELET_STRICT="1", PYTHONUNBUFFERED="1", **env)
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD_PREAMBLE + textwrap.dedent(script)],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
