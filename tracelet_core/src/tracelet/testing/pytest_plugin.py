"""Pytest fixtures for testing code that uses Tracelet, and Tracelet plugins.

Loaded automatically (entry point ``pytest11``) when tracelet-core is installed.

- ``tracelet_start(**kwargs)``: start an isolated run (strict mode, working
  directory and spool in ``tmp_path``, no ``TRACELET_*`` variables from the
  outside); every run it started is stopped at teardown.
- ``tracelet_run``: a run delivering to the recording backend only.
- ``tracelet_recording``: that run's :class:`~tracelet.testing.RecordingBackend`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tracelet
from tracelet.run import Run
from tracelet.testing import RecordingBackend

_KEEP = {"TRACELET_PLUGINS", "TRACELET_DISABLE_PLUGINS"}


@pytest.fixture
def tracelet_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Run]]:
    """A function that starts an isolated run; its keyword arguments go to ``tracelet.start``."""
    for variable in list(os.environ):
        if variable.startswith("TRACELET_") and variable not in _KEEP:
            monkeypatch.delenv(variable)
    monkeypatch.setenv("TRACELET_STRICT", "1")
    monkeypatch.chdir(tmp_path)
    runs: list[Run] = []

    def start(**kwargs: Any) -> Run:
        run = tracelet.start(**kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop(timeout=10)


@pytest.fixture
def tracelet_run(tracelet_start: Callable[..., Run]) -> Run:
    """A run that delivers to the recording backend only."""
    return tracelet_start(backends=["recording"])


@pytest.fixture
def tracelet_recording(tracelet_run: Run) -> RecordingBackend:
    """The recording backend of ``tracelet_run``."""
    backend = tracelet_run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend
