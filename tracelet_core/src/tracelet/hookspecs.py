"""Every hook a Tracelet plugin can implement, and what core does when one raises.

A plugin is an importable object (usually its package) named by an entry point
in the ``tracelet`` group. It implements :func:`tracelet_plugin_info`, which
declares the plugin's name, kind and settings and a ``factory``. For each
run, core calls ``factory(settings)`` and registers the object it returns in
a plugin manager of its own; that object implements the hooks of the plugin's
kind with ``@hookimpl`` methods (``from tracelet.plugin import hookimpl``) and
keeps whatever state it needs for the run.

Core calls one plugin's implementation at a time, inside its own error
handling: an exception raised by a hook never reaches the training script.
It is counted in ``Run.stats()`` and logged (plugin, hook, error) once per
distinct message. What else happens depends on the hook and is said in its
docstring; in short, a backend's batch whose hook raised is retried with
backoff and then spooled, never dropped, and one whose hook raised
:class:`~tracelet.errors.PermanentError` is kept in the spool's rejected part.
In strict mode (``TRACELET_STRICT=1``) loading and configuration errors raise
instead; errors during delivery are still isolated.

A hook implementation may accept a subset of the arguments listed here (a
pluggy rule), so adding an argument to a hook later breaks no plugin. A
method decorated with ``@hookimpl`` whose name is not a hook below is always
an error, in strict mode or not (``PluginManager.check_pending``): on the
declaring object the plugin fails to load; on the object ``factory`` returns
the plugin is skipped for that run (strict mode: :class:`~tracelet.errors.PluginError`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from tracelet.info import BackendRunRef, PluginInfo, RunInfo
from tracelet.records import Artifact, Media, Metric, Param, Record, RunStatus, Tag

if TYPE_CHECKING:
    from tracelet.run import Run

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "tracelet"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- Registration and settings ------------------------------------------------


@hookspec(firstresult=True)
def tracelet_plugin_info() -> PluginInfo:
    """Declare the plugin: its name, kind, settings class and factory.

    Called once per process, on the thread that first starts a run or lists
    plugins (``tracelet plugins``), on the object the entry point names.
    Return a :class:`tracelet.PluginInfo`. Keep it cheap: do not import the
    backend or framework library here.

    If it raises or returns something else, the plugin is reported as failed
    and skipped (strict mode: :class:`tracelet.PluginError`).
    """
    raise NotImplementedError


# --- Routing: backends ----------------------------------------------------------
# The delivery contract is in tracelet_backend_log_metrics's docstring (the hook
# reference shows docstrings, not comments); the other batch hooks point to it.


@hookspec(firstresult=True)
def tracelet_backend_start(run: RunInfo) -> BackendRunRef | None:
    """Create (or, when ``run.resume`` names this backend, attach to) the backend's run.

    Called first on the backend's worker thread, while ``tracelet.start()``
    has already returned; records logged meanwhile wait in the backend's
    queue. Import the backend library here. Return the backend's run id and
    URL (shown by ``run.stats()[name].run_id`` and ``.url``), or ``None``.

    When ``run.resume`` has an entry for this backend's name
    (``run.resume.get(run.backend)``), the backend must attach to that run
    (its id as returned here earlier) instead of creating one: ``tracelet
    replay`` uses it to deliver spooled records to the run they belong to.
    Return the same id.

    If it raises :class:`~tracelet.errors.PermanentError`, the backend is
    marked failed for this run: its records are counted as failed and its
    other hooks are not called. Any other exception is retried with backoff
    (``retry_*`` and ``breaker_*`` settings) while records wait in the spool,
    as for the batch hooks (see :func:`tracelet_backend_log_metrics`).
    """


@hookspec(firstresult=True)
def tracelet_backend_log_metrics(metrics: Sequence[Metric]) -> None:
    """Deliver a batch of metrics, in logging order, at most ``max_batch_size`` long.

    The delivery contract, the same for every batch hook (``log_metrics``,
    ``log_params``, ``set_tags``, ``log_artifacts``, ``log_media``):

    - All of one backend's hooks run on that backend's own worker thread, one
      at a time and in the order records were logged: a backend needs no locks.
    - Return once the backend has stored the batch. If the hook raises, core
      calls it again with the same batch, with exponential backoff
      (``retry_*`` settings). After ``retry_attempts`` calls, or while the
      backend's circuit breaker is open (``breaker_*`` settings), the batch
      goes to the backend's spool on disk and is delivered, in order, once
      the backend answers again, or later by ``tracelet replay``. Nothing is
      dropped for a failing backend.
    - Raise :class:`~tracelet.errors.PermanentError` for a batch the backend
      can never take (a value it refuses, whatever the retry): it is not
      retried, its records are counted as failed in ``Run.stats()`` and kept
      in the spool's rejected part, and delivery goes on with the next batch.
    - Delivery is at least once: a batch whose hook raised after storing part
      of it is sent again whole; make storing idempotent where the backend
      allows it.
    - Every error is counted in ``Run.stats()``; each distinct message is
      logged once (up to 20 per backend), with its traceback.
    """


@hookspec(firstresult=True)
def tracelet_backend_log_params(params: Sequence[Param]) -> None:
    """Deliver a batch of params. A name may repeat with a new value; the last one wins.

    Same contract as :func:`tracelet_backend_log_metrics`: if it raises, the
    batch is retried with backoff, then spooled and delivered later, in order;
    :class:`~tracelet.errors.PermanentError` means never: not retried, kept in
    the spool's rejected part.
    """


@hookspec(firstresult=True)
def tracelet_backend_set_tags(tags: Sequence[Tag]) -> None:
    """Deliver a batch of tags.

    Same contract as :func:`tracelet_backend_log_metrics`: if it raises, the
    batch is retried with backoff, then spooled and delivered later, in order;
    :class:`~tracelet.errors.PermanentError` means never: not retried, kept in
    the spool's rejected part.
    """


@hookspec(firstresult=True)
def tracelet_backend_log_artifacts(artifacts: Sequence[Artifact]) -> None:
    """Upload files or directories. The paths were not checked on the caller's thread.

    Same contract as :func:`tracelet_backend_log_metrics`: if it raises, the
    batch is retried with backoff, then spooled and delivered later, in order;
    :class:`~tracelet.errors.PermanentError` means never: not retried, kept in
    the spool's rejected part.
    """


@hookspec(firstresult=True)
def tracelet_backend_log_media(media: Sequence[Media]) -> None:
    """Deliver images, texts, histograms and figures, in logging order.

    Same contract as :func:`tracelet_backend_log_metrics`: if it raises, the
    batch is retried with backoff, then spooled and delivered later, in order;
    :class:`~tracelet.errors.PermanentError` means never: not retried, kept in
    the spool's rejected part.
    """


@hookspec(firstresult=True)
def tracelet_backend_flush() -> None:
    """Make everything delivered so far durable (called by ``tracelet.flush()`` and at stop).

    Called on the worker thread after every record logged before the flush
    request has been handed to the other routing hooks. It is not retried: if
    it raises, the error is counted and logged and the flush reports failure
    (``tracelet.flush()`` returns ``False``).
    """


@hookspec(firstresult=True)
def tracelet_backend_end(status: RunStatus) -> None:
    """End the backend's run with ``status``; the last hook called on this object.

    Called on the worker thread after the final flush. If ``stop()``'s
    deadline passes first, it is not called: the backend's remaining records
    stay in its spool with the run's status, and ``tracelet replay`` later
    resumes the backend's run, delivers them and calls this hook. It is not
    retried: if it raises, the error is counted and logged.
    """


@hookspec(firstresult=True)
def tracelet_backend_check(timeout: float) -> str | None:
    """Check that the backend can reach its store, for ``tracelet doctor``. Optional.

    Called on an object made by ``factory(settings)`` only for this check
    (no run is started on it, no other hook is called), on a thread of the
    doctor's own, with the settings a ``start()`` would use. Make a real
    connection: a request to the server (MLflow's ``/health``), a query on
    the database, a write test in a local directory. Create nothing that a
    run would not create (no run, no experiment). Importing the backend
    library here is fine.

    Bound every connection and wait by ``timeout`` seconds. ``tracelet
    doctor`` stops waiting half a second later whatever the hook does, and
    reports the backend as not answering.

    Return a short line saying what answered (``"http://host:5000/health:
    OK"``), or ``None``. Raise when the store cannot be reached or used: the
    exception's message is the reason ``tracelet doctor`` shows (say what was
    tried and what happened: ``"http://host:5000/health: connection
    refused"``), and the backend counts as unhealthy. A backend that does
    not implement the hook is reported as "not checked", which is not a
    failure.
    """


# --- Collection: collectors -----------------------------------------------------


@hookspec(firstresult=True)
def tracelet_collect_start(run: RunInfo) -> Iterable[Record] | None:
    """Return the records to log once, at run start (environment, git state).

    Each collector runs on a thread of its own; the records it returns reach
    every backend like records logged by the training script. Called on the
    collector's thread right after ``start()``. If it raises,
    the error is logged and the collector's periodic sampling still runs.
    """


@hookspec(firstresult=True)
def tracelet_collect_interval() -> float | None:
    """Return the seconds between periodic samples, or ``None`` for no sampling.

    Called once on the collector's thread, after ``tracelet_collect_start``.
    """


@hookspec(firstresult=True)
def tracelet_collect_sample() -> Iterable[Record] | None:
    """Return the records of one periodic sample (system resources).

    Called on the collector's thread every ``tracelet_collect_interval()``
    seconds, first right after start. If it raises, the error is logged
    once per distinct error and sampling goes on.
    """


@hookspec(firstresult=True)
def tracelet_collect_stop() -> None:
    """Release what the collector holds; called on its thread when the run stops."""


# --- Framework patching -------------------------------------------------------------


@hookspec(firstresult=True)
def tracelet_patch_targets() -> Sequence[str]:
    """Return the names of the modules this plugin patches (``"torch.utils.tensorboard"``).

    Called once per run when it starts, on the thread calling ``start()``.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def tracelet_patch(run: Run, module: ModuleType) -> None:
    """Patch ``module`` so that what it logs reaches ``run``.

    Called at most once per target and run: from ``start()`` when the
    module is already imported, otherwise on the importing thread right after
    the module has executed (a post-import hook on ``sys.meta_path``).
    Remember the originals to restore them in :func:`tracelet_unpatch`.
    Errors raised by the original functions must reach the user unchanged;
    errors in capture code must be caught (see ``tracelet.patching``).

    If it raises, the error is logged and the plugin's ``tracelet_unpatch``
    is still called at stop, so leave no half-applied patch behind.
    """


@hookspec(firstresult=True)
def tracelet_unpatch() -> None:
    """Restore every original patched by :func:`tracelet_patch`, identity-equal.

    Called once, on the thread calling ``stop()``, before backends are ended.
    """


@hookspec(firstresult=True)
def tracelet_param_values(value: object) -> Mapping[str, Any] | None:
    """Turn a framework's configuration object passed to ``log_params`` into a mapping, or return ``None``.

    ``Run.log_params(params)`` (and ``tracelet.log_params``) calls this hook
    when ``params`` is not a plain ``dict``, before flattening it, on the
    caller's thread (``log_params`` is not a hot path). A framework plugin
    returns a mapping for an object of its framework (tracelet-hydra: an
    OmegaConf ``DictConfig`` with its interpolations resolved) so that core
    needs no import of the framework; nested mappings in the result are
    flattened as usual. Return ``None`` for anything else: the first plugin
    that returns a mapping wins, and with none the value is used as given.

    Called only on the run's framework plugins. If it raises, the error is
    logged once and ``params`` is used as given (strict mode: raised).
    """


@hookspec(firstresult=True)
def tracelet_watch(run: Run, model: object, log: str, every: int) -> bool | None:
    """Watch ``model`` for ``run`` (``tracelet.watch``); return ``True`` if this plugin handles it.

    Called on the thread calling :meth:`Run.watch`, on one framework plugin
    after another until one returns ``True``; ``None`` or ``False`` means
    "not a model of my framework" (the plugin must not import a framework to
    find out: look at ``type(model).__module__`` or ``sys.modules``). Core
    has checked the arguments: ``log`` is ``"gradients"``, ``"parameters"``
    or ``"all"``, ``every`` a positive ``int``. Watching a model already
    watched replaces its settings. What is logged goes through ``run``'s
    ``log_*`` methods like the script's own values.

    When no plugin returns ``True``, :meth:`Run.watch` raises
    :class:`~tracelet.errors.TraceletError` saying what to install. If the
    hook raises, the error is logged and the model is not watched (strict
    mode: it is raised).
    """


@hookspec(firstresult=True)
def tracelet_unwatch(run: Run, model: object | None) -> bool | None:
    """Stop watching ``model`` (every model this plugin watches when ``None``) and remove every hook it added.

    Called by :meth:`Run.unwatch` on one framework plugin after another until
    one returns ``True`` (it was watching the model); and at stop, with
    ``model=None``, on every plugin that handled a :func:`tracelet_watch`,
    before :func:`tracelet_unpatch`. Errors are logged (strict mode: raised
    by ``unwatch``, logged at stop).
    """
