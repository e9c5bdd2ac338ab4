"""Pytest fixtures for testing code that uses Tracelet, and Tracelet plugins.

Loaded automatically (entry point ``pytest11``) when tracelet-core is installed.

- ``tracelet_start(**kwargs)``: start an isolated run (strict mode, working
  directory and spool in ``tmp_path``, no ``TRACELET_*`` variables from the
  outside, only the plugins the test names); every run it started is stopped
  at teardown.
- ``tracelet_plugins``: the plugins every run of a test loads besides those
  named in the ``tracelet_start`` call; override it in a ``conftest.py``.
- ``tracelet_run``: a run delivering to the recording backend only.
- ``tracelet_recording``: that run's :class:`~tracelet.testing.RecordingBackend`.

Isolation: a run started by ``tracelet_start`` loads the recording backend,
the backends in ``backends=``, the plugins in ``plugins=``, the plugins whose
table appears in ``config=`` (``{"system": {...}}``), those of the
``tracelet_plugins`` fixture and of the ``@pytest.mark.tracelet_plugins(...)``
marker; nothing else installed is even imported (``TRACELET_PLUGINS``, set
for the ``start()`` call only). A test that sets ``TRACELET_PLUGINS`` itself
keeps its own value;
``@pytest.mark.tracelet_plugins(isolate=False)`` loads every installed plugin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import tracelet
from tracelet.run import Run
from tracelet.testing import RecordingBackend

_KEEP = {"TRACELET_DISABLE_PLUGINS"}
_ONLY = "TRACELET_PLUGINS"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "tracelet_plugins(*names, isolate=True): plugins the tracelet_start fixture loads besides those a call names; "
        "isolate=False loads every installed plugin",
    )


@pytest.fixture
def tracelet_plugins() -> Sequence[str]:
    """Plugins every ``tracelet_start`` run of a test loads (none by default): override it in a ``conftest.py``.

    A framework or collector plugin's tests name their own plugin here, e.g. ``return ["pytorch"]``.
    """
    return ()


@pytest.fixture
def tracelet_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tracelet_plugins: Sequence[str]
) -> Iterator[Callable[..., Run]]:
    """A function that starts an isolated run; its keyword arguments go to ``tracelet.start``.

    ``plugins=[...]`` (not passed on) names collector and framework plugins to load; see the module docstring.
    """
    for variable in list(os.environ):
        if variable.startswith("TRACELET_") and variable not in _KEEP:
            monkeypatch.delenv(variable)
    monkeypatch.setenv("TRACELET_STRICT", "1")
    monkeypatch.chdir(tmp_path)
    named = set(tracelet_plugins)
    isolate = True
    for marker in request.node.iter_markers("tracelet_plugins"):
        named.update(marker.args)
        isolate = isolate and marker.kwargs.get("isolate", True)
    runs: list[Run] = []

    def start(*, plugins: Iterable[str] = (), **kwargs: Any) -> Run:
        if not isolate or _ONLY in os.environ:  # a test that set TRACELET_PLUGINS itself keeps it
            run = tracelet.start(**kwargs)
        else:
            # Only for the start() call: a `tracelet replay` or a child process the test runs sees every plugin.
            os.environ[_ONLY] = ",".join(sorted(named | set(plugins) | _named_in(kwargs)))
            try:
                run = tracelet.start(**kwargs)
            finally:
                del os.environ[_ONLY]
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop(timeout=10)


def _named_in(arguments: Mapping[str, Any]) -> set[str]:
    """The plugins a ``tracelet.start`` call names: the recording backend, ``backends`` and plugin tables."""
    names = {"recording", *(arguments.get("backends") or ())}
    tables = {**(arguments.get("config") or {}), **arguments}
    names.update(key for key, value in tables.items() if isinstance(value, Mapping))
    names.update(key.split(".", 1)[0] for key in tables if "." in key)
    return names


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
