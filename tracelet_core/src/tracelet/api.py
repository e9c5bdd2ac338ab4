"""The module-level API: ``tracelet.start()``, the active run, and functions that log to it."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracelet import lifecycle
from tracelet.errors import TraceletError
from tracelet.log import get_logger
from tracelet.records import RunStatus

if TYPE_CHECKING:
    from tracelet.run import Run

__all__ = [
    "active_run",
    "flush",
    "log_artifact",
    "log_figure",
    "log_histogram",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_params",
    "log_text",
    "set_tags",
    "start",
    "stop",
    "unwatch",
    "watch",
]

_log = get_logger()
_start_lock = threading.RLock()
_active: Run | None = None
_thread_runs: dict[int, tuple[Run, ...]] = {}
"""Thread id -> the child runs entered on that thread (``with run.child()``), innermost last.

Replaced, never changed in place (under ``_thread_runs_lock``): the logging functions read it without a lock.
Empty unless a child run is active, so the hot path pays one truthiness test."""
_thread_runs_lock = threading.Lock()  # not _start_lock: start() holds that while stopping a run, whose children
# stop on threads of their own and update this table


def start(
    project: str | None = None,
    name: str | None = None,
    backends: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    *,
    parent: Run | None = None,
    **options: Any,
) -> Run:
    """Start a run that delivers to every configured backend, and make it the active run.

    With ``parent``, start a child run of ``parent`` instead (the same as
    ``parent.child(name, ...)``, see :meth:`Run.child`): the active run is not
    stopped, and the child is the active run of the calling thread until it
    stops; then the run active before it is again.

    ``backends=None`` means every installed backend plugin that is enabled by
    default. ``config`` holds configuration keys (``{"queue_size": 10_000,
    "mlflow": {"tracking_uri": ...}}``); ``options`` are more keys and win
    over ``config``. If a run is already active, it is stopped first
    (status ``FINISHED``), so re-running a notebook cell just works.

    Returns without waiting for backends to start: each backend starts on
    its own worker thread while records queue up.

    ``mode="offline"`` starts no backend and keeps every record in the spool
    for ``tracelet sync``; ``run_id="..."`` (with ``resume="allow"``,
    ``"must"`` or ``"never"``) continues the backend runs an earlier process
    of that id created (docs/offline-and-resume.md).

    Raises :class:`~tracelet.errors.ConfigError` for an invalid or (in strict
    mode) unknown configuration key, an unknown backend name, or a ``run_id``
    that ``resume`` does not allow or another process uses, and, in
    strict mode, :class:`~tracelet.errors.PluginError` when a plugin failed to
    load or to be created.
    """
    global _active
    if parent is not None:
        keys: dict[str, Any] = dict(config or {})
        keys.update(options)
        for key, value in (("project", project), ("backends", backends)):
            if value is not None:
                keys[key] = value
        child = parent.child(name, **keys)
        _activate(child)
        return child
    with _start_lock:
        if _active is not None:
            _log.info("a run is active; finishing it before starting the new one", run=_active.id, name=_active.name)
            _active.stop(RunStatus.FINISHED)
        arguments: dict[str, Any] = dict(config or {})
        arguments.update(options)
        for key, value in (("project", project), ("name", name), ("backends", backends)):
            if value is not None:
                arguments[key] = tuple(value) if key == "backends" else value
        from tracelet.assembly import build_run  # the machinery is imported on first start(), not by `import tracelet`

        run = build_run(arguments, on_stop=_deactivate)
        _active = run
        lifecycle.register_exit_handler(_process_run)
        if run.info.id and not run._inert and run.settings.handle_signals:
            lifecycle.install_signal_handlers(run.settings.sigterm_grace)
        return run


def _deactivate(run: Run) -> None:
    global _active
    with _start_lock:
        if _active is run:
            _active = None


def _reset_after_fork() -> None:
    """A forked child may have been forked while another thread held the lock: start with a fresh one."""
    global _start_lock, _thread_runs_lock
    _start_lock = threading.RLock()
    _thread_runs_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def active_run() -> Run | None:
    """The run the module-level functions log to on this thread, if any.

    The innermost child run entered on this thread (``with run.child():``,
    or started by ``start(parent=...)``) and not stopped yet; else the run
    started by :func:`start` and not yet stopped.
    """
    entered = _thread_runs
    if entered:
        runs = entered.get(threading.get_ident())
        if runs:
            return runs[-1]
    return _active


def _process_run() -> Run | None:
    """The run started by :func:`start`: what the exit and signal handlers stop (its children with it)."""
    return _active


def _activate(run: Run) -> None:
    """Make a child run the active run of the calling thread (``Run.__enter__``, ``start(parent=...)``)."""
    global _thread_runs
    ident = threading.get_ident()
    with _thread_runs_lock:
        runs = _thread_runs.get(ident, ())
        if (runs and runs[-1] is run) or (run._stopped and not run._inert):
            return
        _thread_runs = {**_thread_runs, ident: (*runs, run)}


def _child_stopped(run: Run) -> None:
    """A child run stopped: it is no longer its parent's open child, nor any thread's active run."""
    global _thread_runs
    parent = run.parent
    if parent is not None:
        with parent._stop_lock:
            if run in parent._children:
                parent._children.remove(run)
    with _thread_runs_lock:
        if any(run in runs for runs in _thread_runs.values()):
            remaining = {ident: tuple(r for r in runs if r is not run) for ident, runs in _thread_runs.items()}
            _thread_runs = {ident: runs for ident, runs in remaining.items() if runs}


def _require_run(function: str) -> Run:
    run = active_run()
    if run is None:
        raise TraceletError(f"no active run: call tracelet.start() before tracelet.{function}()")
    return run


def log_metric(name: str, value: Any, step: int | None = None, timestamp: float | None = None) -> None:
    """Log one scalar to the active run (see :meth:`Run.log_metric`)."""
    run = _active
    if _thread_runs:
        run = active_run()
    if run is None:
        run = _require_run("log_metric")
    run.log_metric(name, value, step, timestamp)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several scalars at one step to the active run."""
    _require_run("log_metrics").log_metrics(metrics, step)


def log_params(params: Mapping[str, Any]) -> None:
    """Log parameters to the active run; nested mappings are flattened as ``"a.b.c"``."""
    _require_run("log_params").log_params(params)


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run."""
    _require_run("set_tags").set_tags(tags)


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> None:
    """Upload a file or directory to the active run's backends."""
    _require_run("log_artifact").log_artifact(path, name)


def log_image(name: str, image: Any, step: int | None = None) -> None:
    """Log an image (numpy array, torch tensor or PIL image) to the active run."""
    _require_run("log_image").log_image(name, image, step)


def log_text(name: str, text: str, step: int | None = None) -> None:
    """Log a text snippet to the active run."""
    _require_run("log_text").log_text(name, text, step)


def log_histogram(name: str, values: Any, step: int | None = None, *, bins: int = 64) -> None:
    """Log the distribution of ``values`` to the active run."""
    _require_run("log_histogram").log_histogram(name, values, step, bins=bins)


def log_figure(name: str, figure: Any, step: int | None = None) -> None:
    """Log a matplotlib figure to the active run."""
    _require_run("log_figure").log_figure(name, figure, step)


def flush(timeout: float | None = None) -> bool:
    """Wait until everything logged to the active run is delivered; ``True`` if it all was.

    With no active run there is nothing to deliver: returns ``True``.
    """
    run = active_run()
    return True if run is None else run.flush(timeout)


def stop(status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> bool:
    """Stop the active run (see :meth:`Run.stop`); with none active, return ``True``."""
    run = active_run()
    return True if run is None else run.stop(status, timeout)


def watch(model: Any, log: str = "gradients", every: int = 100) -> None:
    """Log histograms of ``model``'s gradients and/or parameters every ``every`` steps (see :meth:`Run.watch`).

    ``tracelet.watch(model, log="all", every=100)``: ``log`` is
    ``"gradients"``, ``"parameters"`` or ``"all"``. A framework plugin does
    the work: for a ``torch.nn.Module``, tracelet-pytorch (a step is an
    optimizer step; it also logs a model summary once; see its page). Raises
    :class:`~tracelet.errors.TraceletError` with no active run or when no
    installed framework plugin can watch the model.
    """
    _require_run("watch").watch(model, log, every)


def unwatch(model: Any = None) -> None:
    """Stop watching ``model`` (every model when ``None``) and remove its hooks; with no active run, nothing to do."""
    run = _active
    if run is not None:
        run.unwatch(model)
