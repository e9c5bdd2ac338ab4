"""Private directories for files that a plugin hands to backends as artifacts.

A backend reads an :class:`~tracelet.records.Artifact`'s file on its own
worker thread, at any time until ``Run.stop()`` returns, so the plugin that
wrote the file (a collector's environment record, a git diff) cannot delete it
when it returns the record. :func:`artifact_dir` gives it a directory that
lives as long as the run does: it is removed when the run's
:class:`~tracelet.info.RunInfo` is garbage collected (the run, its backend
workers and its collectors are gone), or at interpreter exit once the active
run has stopped, whichever comes first.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

from tracelet.info import RunInfo

__all__ = ["artifact_dir"]

_lock = threading.Lock()
_finalizers: list[weakref.finalize[..., object]] = []


def artifact_dir(run: RunInfo, owner: str) -> Path:
    """Make a new private directory for files that ``owner`` (a plugin name) logs as artifacts of ``run``.

    The caller owns the files inside until it returns the records naming
    them; from then on, this module deletes the whole directory (see the
    module's docstring for when). Safe to call from any thread.
    """
    path = Path(tempfile.mkdtemp(prefix=f"tracelet-{owner}-{run.id[:8]}-"))
    finalizer: weakref.finalize[..., object] = weakref.finalize(run, _remove, path)
    # weakref's own exit hook may run before core's stop-at-exit handler, while
    # backends still read the files; _remove_at_exit orders the two instead.
    finalizer.atexit = False
    with _lock:
        _finalizers[:] = [f for f in _finalizers if f.alive]
        _finalizers.append(finalizer)
    return path


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _remove_at_exit() -> None:
    """Stop the active run (so that its backends are done with the files), then remove every directory."""
    from tracelet.api import _process_run  # deferred: tracelet.api imports most of core

    run = _process_run()  # the run start() started: its stop() ends its child runs too
    if run is not None:
        # Core's own exit handler does the same; whichever runs first stops the run, the other is a no-op.
        run.stop()
    with _lock:
        finalizers = list(_finalizers)
        _finalizers.clear()
    for finalizer in finalizers:
        finalizer()


atexit.register(_remove_at_exit)
