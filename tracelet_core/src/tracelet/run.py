"""A started run: the logging API on the caller's side and the run's lifecycle.

Every ``log_*`` method does only what must happen on the caller's thread
(converting a tensor to a number, copying an image, rendering a figure) and
appends an immutable item to the dispatcher's intake. No I/O, no lock, no
per-call logging.
"""

from __future__ import annotations

import operator
import os
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from tracelet.errors import TraceletError
from tracelet.info import RunInfo
from tracelet.log import get_logger
from tracelet.media import figure_to_png, image_pixels, make_histogram
from tracelet.records import Artifact, Figure, Image, Param, Record, RunStatus, Tag, Text, is_record
from tracelet.values import (
    MILLISECONDS_FROM,
    ParamProblem,
    flatten_params,
    name_label,
    short_repr,
    to_metric_value,
    to_name,
    to_param_value,
    to_timestamp,
)

if TYPE_CHECKING:
    from tracelet.assembly import Configured
    from tracelet.collectors import CollectorThread
    from tracelet.config import CoreSettings
    from tracelet.dispatcher import Dispatcher
    from tracelet.worker import BackendStats

__all__ = ["Run", "RunStats"]

_log = get_logger()
_now = time.time
_WATCH_LOGS = ("gradients", "parameters", "all")


@attrs.frozen
class RunStats:
    """What ``Run.stats()`` returns. ``stats()["mlflow"]`` is that backend's :class:`BackendStats`."""

    backends: Mapping[str, BackendStats]
    rejected: Mapping[str, int]
    """Values refused and dropped, by ``"kind:name"`` (``"metric:loss"``); see docs/reliability.md, hostile input."""
    normalised: Mapping[str, int] = attrs.field(factory=dict)
    """Values kept in a changed form (a non-str name, a float step, a timestamp in ms), by ``"kind:name"``."""
    redacted: int = 0
    """Param, tag and text records whose value had a secret masked."""
    router_error: str | None = None
    """Set when the router thread died (an internal error); logging calls, ``flush()`` and ``stop()`` route instead."""

    def __getitem__(self, backend: str) -> BackendStats:
        try:
            return self.backends[backend]
        except KeyError:
            known = ", ".join(self.backends) or "none"
            raise KeyError(f"no backend {backend!r} in this run (skipped, or not started); its backends: {known}") from None


class Run:
    """One tracked run. Returned by :func:`tracelet.start`; also a context manager.

    Calling a ``log_*`` method after :meth:`stop` raises
    :class:`~tracelet.errors.TraceletError`.
    """

    def __init__(
        self,
        info: RunInfo,
        dispatcher: Dispatcher,
        collectors: list[CollectorThread],
        plugins: Mapping[str, object],
        *,
        settings: CoreSettings,
        on_stop: Callable[[Run], None],
    ) -> None:
        self.info = info
        self._dispatcher = dispatcher
        self._intake = dispatcher.intake
        self._intake_size = dispatcher.intake_size
        self._wake = dispatcher.wake
        self._hurry = dispatcher.hurry
        self._hurry_at = dispatcher.hurry_at
        self._collectors = collectors
        self._plugins = dict(plugins)
        self._unpatch: Callable[[], object] | None = None  # the framework patcher's stop (set by run assembly)
        self._after_stop: list[Callable[[], object]] = []  # called once delivery ended (the run index's release)
        self._param_values: Callable[[object], object] | None = None  # framework plugins' converters (assembly)
        self._watch: Callable[[object, str, int], bool] | None = None  # the framework patcher's watch/unwatch
        self._unwatch: Callable[[object], object] | None = None
        self.settings = settings
        """The core settings this run was started with (read-only)."""
        self._strict = settings.strict
        self._stop_timeout = settings.stop_timeout
        self._on_stop = on_stop
        self._step = 0
        self._stopped = False
        self._stop_lock = threading.RLock()  # re-entrant: the SIGTERM handler may interrupt stop() itself
        self._inert = False
        self._inherited = False  # inert because a forked child inherited it (see _make_inert)
        self._stop_result = False
        self._tally = dispatcher.tally
        self.parent: Run | None = None
        """The run this one is nested under (see :meth:`child`), or ``None``."""
        self._children: list[Run] = []  # open children, under _stop_lock
        self._child_names: list[str] = []
        self._configured: Configured | None = None  # what start() discovered and resolved: a child reuses it
        self._arguments: dict[str, Any] = {}  # start()'s configuration keys: a child starts from them
        if settings.strict:
            # Strict mode checks metric names on the caller's thread, to raise there. Otherwise the
            # router checks them, which keeps the hot path free of the test.
            self.log_metric = self._log_metric_checked  # type: ignore[method-assign]

    # --- identity -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def project(self) -> str:
        return self.info.project

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def backends(self) -> tuple[str, ...]:
        """Names of the backends this run delivers to."""
        return self.info.backends

    @property
    def step(self) -> int:
        """The step used when a ``log_*`` call leaves it out: the last explicit step, or one set here."""
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        self._step = operator.index(value)

    def get_plugin(self, name: str) -> object:
        """The object a plugin's factory made for this run (its backend, collector or patcher)."""
        try:
            return self._plugins[name]
        except KeyError:
            raise KeyError(f"no plugin {name!r} in this run; active plugins: {', '.join(self._plugins) or 'none'}") from None

    @property
    def strict(self) -> bool:
        return self._strict

    # --- nested runs ------------------------------------------------------------------

    def child(self, name: str | None = None, **options: Any) -> Run:
        """Start a run nested under this one (a cross-validation fold, a sweep's trial, a pipeline's stage).

        The child is a full run, with its own backend workers, started at once
        and returned: ``fold.log_metric(...)`` works from any thread. Used as a
        context manager (``with run.child(name="fold-1") as fold:``) it is, on
        the thread that entered it, the run that the module-level functions
        (``tracelet.log_metric``, ``tracelet.active_run()``) use, until the
        ``with`` block ends; then it stops, and the run active before it is
        active again. Other threads are not affected: three threads may each
        hold a child of their own.

        ``options`` are configuration keys as for :func:`tracelet.start`, on
        top of this run's (a plugin's table is merged into this run's:
        ``wandb={"job_type": "fold"}``); by default the child delivers to
        this run's backends with its configuration, in its project. ``name``
        defaults to ``<this run's name>-<n>``. Collectors and framework
        patches stay this run's.

        Each backend links the child to this run natively where it can
        (``RunInfo.parent``; MLflow's nested runs, W&B's group, ClearML's
        parent task, AIM's experiment and ``tracelet.parent_run_id``), and
        every backend gets the tag ``tracelet.parent_run_id``. A child's
        backend starts once this run's run in that backend has started.

        :meth:`stop` on this run stops its open children first. Raises
        :class:`~tracelet.errors.TraceletError` once this run has stopped.
        """
        from tracelet.api import _child_stopped
        from tracelet.assembly import build_child

        if self._stopped and not self._inert:
            self._raise_stopped()
        run = build_child(self, name, options, on_stop=_child_stopped)
        with self._stop_lock:
            adopted = not self._stopped or self._inert
            if adopted and not run._inert:
                self._children.append(run)
        if not adopted:  # this run stopped meanwhile (another thread, a signal)
            run.stop(RunStatus.KILLED, timeout=0)
            self._raise_stopped()
        return run

    @property
    def children(self) -> tuple[Run, ...]:
        """The child runs started from this run (:meth:`child`) and not stopped yet."""
        with self._stop_lock:
            return tuple(self._children)

    # --- logging (caller's thread) ------------------------------------------------------

    def log_metric(self, name: str, value: Any, step: int | None = None, timestamp: float | None = None) -> None:
        """Log one scalar. ``step`` defaults to :attr:`step`; ``timestamp`` to now (seconds)."""
        if self._stopped:
            self._raise_stopped()  # raises, except in an inert run (forked child, non-logging rank)
            return
        if type(value) is not float:
            number = to_metric_value(value)
            if number is None:
                self._reject("metric", name, f"a {type(value).__name__} is not a single real number")
                return
            value = number
        if step is None:
            step = self._step
        elif type(step) is int:
            self._step = step
        else:
            step = self._explicit_step(step, name)
            if step is None:
                return
        # Dispatcher.submit, inlined: this is the hot path.
        intake = self._intake
        size = len(intake)
        if size >= self._intake_size:
            size = self._dispatcher.make_room()  # the loop outruns the router: wait a moment, else drop (counted)
            if size < 0:
                return
        intake.append((name, value, step, _now() if timestamp is None else self._timestamp(timestamp, name)))
        if size == 0:
            self._wake()
        elif size == self._hurry_at:
            self._hurry()

    def _log_metric_checked(self, name: str, value: Any, step: int | None = None, timestamp: float | None = None) -> None:
        """:meth:`log_metric` with the name checked first (strict mode)."""
        checked = self._name("metric", name)
        if checked is not None:
            Run.log_metric(self, checked, value, step, timestamp)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several scalars at one step."""
        items = self._items("log_metrics", metrics)
        for name, value in items:
            self.log_metric(name, value, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested mappings are flattened as ``"a.b.c"``.

        A mapping that contains itself, or a key whose ``str()`` raises, is
        refused where it occurs; the rest is logged. Anything but a ``dict``
        is first offered to the framework plugins' ``tracelet_param_values``
        hook (an OmegaConf ``DictConfig`` with tracelet-hydra installed).
        """
        if type(params) is not dict and self._param_values is not None:
            params = self._param_values(params)  # type: ignore[assignment]
        if self._items("log_params", params) == ():
            return
        for key, value in flatten_params(params):
            name = self._name("param", key)
            if name is None:
                continue
            if type(value) is ParamProblem:
                self._reject("param", name, value)
                continue
            try:
                converted = to_param_value(value)
            except Exception as error:  # noqa: BLE001 - a value whose str() raises is refused, not raised
                self._reject("param", name, f"cannot turn a {type(value).__name__} into text: {error}", error)
                continue
            self.log_record(Param(name, converted))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set string tags on the run."""
        for key, value in self._items("set_tags", tags):
            name = self._name("tag", key)
            if name is None:
                continue
            try:
                text = value if type(value) is str else str(value)
            except Exception as error:  # noqa: BLE001 - a value whose str() raises is refused, not raised
                self._reject("tag", name, f"cannot turn a {type(value).__name__} into text: {error}", error)
                continue
            self.log_record(Tag(name, text))

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        """Upload a file or directory, under ``name`` (default: its base name).

        The path is not read here; the backend's worker reads it later, so
        do not delete it before :meth:`flush` or :meth:`stop`.
        """
        try:
            text = os.fsdecode(path)
        except TypeError:
            self._reject("artifact", name_label(name or path), f"a {type(path).__name__} is not a path")
            return
        if not text:  # os.path.abspath("") is the working directory: never upload that by accident
            self._reject("artifact", name_label(name or path), "the path is empty")
            return
        absolute = os.path.abspath(text)
        self.log_record(Artifact(absolute, name or os.path.basename(absolute.rstrip(os.sep))))

    def log_image(self, name: str, image: Any, step: int | None = None) -> None:
        """Log an image: a numpy array or torch tensor (HW, HWC or CHW) or a PIL image."""
        checked = self._name("image", name)
        resolved = None if checked is None else self._step_for(step, checked)  # one refusal per call, not two
        if resolved is None or checked is None:
            return
        try:
            pixels, width, height, channels = image_pixels(image)
        except Exception as error:  # noqa: BLE001 - bad input of any kind is rejected, not raised
            self._reject("image", name, str(error), error)
            return
        self.log_record(Image(checked, pixels, width, height, channels, resolved, _now()))

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Log a text snippet."""
        checked = self._name("text", name)
        resolved = None if checked is None else self._step_for(step, checked)  # one refusal per call, not two
        if resolved is None or checked is None:
            return
        try:
            content = text if type(text) is str else str(text)
        except Exception as error:  # noqa: BLE001 - a text whose str() raises is refused, not raised
            self._reject("text", checked, f"cannot turn a {type(text).__name__} into text: {short_repr(error)}", error)
            return
        self.log_record(Text(checked, content, resolved, _now()))

    def log_histogram(self, name: str, values: Any, step: int | None = None, *, bins: int = 64) -> None:
        """Log the distribution of ``values`` (a sequence, numpy array or tensor) in ``bins`` bins."""
        checked = self._name("histogram", name)
        resolved = None if checked is None else self._step_for(step, checked)  # one refusal per call, not two
        if resolved is None or checked is None:
            return
        try:
            histogram = make_histogram(checked, values, bins, resolved, _now())
        except Exception as error:  # noqa: BLE001 - bad input of any kind is rejected, not raised
            self._reject("histogram", name, str(error), error)
            return
        self.log_record(histogram)

    def log_figure(self, name: str, figure: Any, step: int | None = None) -> None:
        """Log a matplotlib figure, rendered to PNG now (figures are not thread-safe)."""
        checked = self._name("figure", name)
        resolved = None if checked is None else self._step_for(step, checked)  # one refusal per call, not two
        if resolved is None or checked is None:
            return
        try:
            png = figure_to_png(figure)
        except Exception as error:  # noqa: BLE001 - bad input of any kind is rejected, not raised
            self._reject("figure", name, str(error), error)
            return
        self.log_record(Figure(checked, png, resolved, _now()))

    def log_record(self, record: Record) -> None:
        """Queue a ready-made record (for plugins: collectors, framework capture).

        Its fields are checked on the router thread like every record's (see
        :mod:`tracelet.checks`): one that cannot be made valid is refused and
        counted in ``stats().rejected``, never raised here outside strict mode.
        """
        if self._stopped:
            self._raise_stopped()  # raises, except in an inert run (forked child, non-logging rank)
            return
        if not is_record(record):
            self._reject("record", type(record).__name__, "log_record() takes a tracelet record (Metric, Param, ...)")
            return
        self._dispatcher.submit(record)

    # --- watching models --------------------------------------------------------------------

    def watch(self, model: Any, log: str = "gradients", every: int = 100) -> None:
        """Log histograms of ``model``'s gradients and/or parameters every ``every`` training steps.

        ``log`` is ``"gradients"``, ``"parameters"`` or ``"all"``. A framework
        plugin does the work (``tracelet-pytorch`` for a ``torch.nn.Module``:
        what a step is and what is logged is in its documentation); watching a
        model again replaces its settings. Raises :class:`ValueError` for
        another ``log`` or an ``every`` that is not a positive int, and
        :class:`~tracelet.errors.TraceletError` when no installed framework
        plugin can watch this kind of model. Stopping the run unwatches every model.
        """
        if log not in _WATCH_LOGS:
            raise ValueError(f"watch(log={log!r}): log must be one of {', '.join(map(repr, _WATCH_LOGS))}")
        if type(every) is not int or every < 1:
            raise ValueError(f"watch(every={every!r}): every must be a positive int (training steps between histograms)")
        if self._stopped:
            self._raise_stopped()  # raises, except in an inert run (forked child, non-logging rank)
            return
        if self._watch is None or not self._watch(model, log, every):
            kind = f"{type(model).__module__}.{type(model).__qualname__}"
            frameworks = ", ".join(name for name in self.info.plugins if name not in self.info.backends) or "none"
            raise TraceletError(
                f"no framework plugin in this run can watch a {kind}; for a torch.nn.Module install tracelet-pytorch "
                f"(pip install tracelet-pytorch) and leave it enabled. Plugins in this run besides backends: {frameworks}"
            )

    def unwatch(self, model: Any = None) -> None:
        """Stop watching ``model`` (every watched model when ``None``) and remove every hook added for it.

        A model that is not watched is ignored; so is a call after :meth:`stop`,
        which has unwatched every model already.
        """
        if not self._stopped and self._unwatch is not None:
            self._unwatch(model)

    # --- lifecycle ------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is delivered; ``True`` if all of it was, in time."""
        if self._stopped:
            return self._stop_result
        return self._dispatcher.flush(timeout)

    def stop(self, status: RunStatus | str = RunStatus.FINISHED, timeout: float | None = None) -> bool:
        """End the run with ``status`` and return by ``timeout`` seconds (default: ``stop_timeout``).

        Unpatches frameworks, stops collectors, delivers what is queued, ends
        every backend's run and joins the threads. A backend that has not
        finished by the deadline is abandoned and its remaining records are
        written to its spool, for ``tracelet replay``. Returns ``True`` when everything was delivered
        and every backend ended in time. Calling it again returns the first
        result.
        """
        status = RunStatus(status)
        if self._inert:
            # A forked child's inherited run stays active: a later pool task in the same child logs to it (as
            # nothing) instead of finding no active run. A rank that does not log ends its run as usual.
            if not self._inherited:
                self._on_stop(self)
            return True
        effective = self._stop_timeout if timeout is None else timeout
        deadline = time.monotonic() + effective
        with self._stop_lock:
            if self._stopped:
                return self._stop_result
            self._stopped = True
            children = list(self._children)
        self._on_stop(self)
        children_ended = self._stop_children(children, status, deadline)
        if self._unpatch is not None:
            self._unpatch()
        for collector in self._collectors:
            collector.stop(deadline)
        ended = self._dispatcher.stop(status, deadline)
        for callback in self._after_stop:
            callback()
        backend_stats = self.stats().backends.values()
        self._stop_result = (
            ended and children_ended and all(s.failed == 0 and s.dropped == 0 and s.state == "ended" for s in backend_stats)
        )
        if not ended:
            _log.warning(
                "stop() deadline reached; what some backends did not deliver is in the spool for `tracelet replay`",
                run=self.id,
                timeout=effective,
            )
        return self._stop_result

    def stats(self) -> RunStats:
        """Delivery figures per backend, and values refused on the caller's thread."""
        return RunStats(
            {worker.name: worker.stats() for worker in self._dispatcher.workers},
            self._tally.counts("rejected"),
            self._tally.counts("normalised"),
            self._dispatcher.redacted,
            self._dispatcher.thread_error,
        )

    def __enter__(self) -> Run:
        if self.parent is not None:
            from tracelet.api import _activate

            _activate(self)  # a child: the module-level functions of this thread use it until __exit__
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        if kind is None:
            self.stop(RunStatus.FINISHED)
        else:
            self.stop(RunStatus.KILLED if issubclass(kind, KeyboardInterrupt) else RunStatus.FAILED)

    def __repr__(self) -> str:
        return f"<tracelet.Run {self.name!r} id={self.id} project={self.project!r} backends={list(self.backends)}>"

    # --- internals -------------------------------------------------------------------------

    def _stop_children(self, children: list[Run], status: RunStatus, deadline: float) -> bool:
        """Stop the open children before this run, all by ``deadline``, each on a thread (several at once).

        ``True`` when each of them delivered everything and ended in time.
        """
        if not children:
            return True
        if len(children) == 1:
            return children[0].stop(status, max(0.0, deadline - time.monotonic()))
        results: list[bool] = []

        def stop(child: Run) -> None:
            results.append(child.stop(status, max(0.0, deadline - time.monotonic())))

        threads = [threading.Thread(target=stop, args=(child,), name="tracelet-stop-child", daemon=True) for child in children]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(results) == len(children) and all(results)

    def _attach_unpatch(self, unpatch: Callable[[], object]) -> None:
        """What ``stop()`` calls first: undo the framework patches (a callable, so this module needs no patching)."""
        self._unpatch = unpatch

    def _attach_after_stop(self, callback: Callable[[], object]) -> None:
        """What ``stop()`` calls once the backends ended (or were abandoned): run assembly releases the run id."""
        self._after_stop.append(callback)

    def _attach_param_values(self, param_values: Callable[[object], object]) -> None:
        """What ``log_params`` offers a non-dict to: the framework plugins' ``tracelet_param_values`` hooks."""
        self._param_values = param_values

    def _attach_watchers(self, watch: Callable[[object, str, int], bool], unwatch: Callable[[object], object]) -> None:
        """What :meth:`watch` and :meth:`unwatch` call: the framework patcher's (set by run assembly)."""
        self._watch = watch
        self._unwatch = unwatch

    def _step_for(self, step: Any, name: str) -> int | None:
        if step is None:
            return self._step
        return self._explicit_step(step, name)

    def _explicit_step(self, step: Any, name: str) -> int | None:
        try:
            resolved = operator.index(step)
        except Exception as error:  # noqa: BLE001 - TypeError mostly; a hostile __index__ may raise anything
            if isinstance(step, float) and step.is_integer():
                resolved = int(step)
                self._tally.normalise("step", name, f"step {step!r} is a float; {resolved} used")
            else:
                self._reject("step", name_label(name), f"step {short_repr(step)} is not an integer", error)
                return None
        self._step = resolved
        return resolved

    def _name(self, kind: str, name: object) -> str | None:
        """``name`` as a record name (see :func:`~tracelet.values.to_name`); ``None`` once refused."""
        if type(name) is str and name:
            return name
        checked = to_name(name)
        if checked is None:
            self._reject(kind, name_label(name), "a name must be a non-empty string")
        else:
            self._tally.normalise(kind, checked, f"a {type(name).__name__} name; str() of it used")
        return checked

    def _timestamp(self, timestamp: object, name: str) -> float:
        """An explicit timestamp in seconds: ms/µs/ns converted, an unusable one replaced by now."""
        if type(timestamp) is float and 0.0 <= timestamp <= MILLISECONDS_FROM:
            return timestamp
        seconds = to_timestamp(timestamp)
        if seconds is None:
            reason = f"timestamp {short_repr(timestamp)} is not seconds since the epoch; now used"
            self._tally.normalise("timestamp", name, reason)
            return _now()
        if seconds != timestamp:
            self._tally.normalise("timestamp", name, f"timestamp {short_repr(timestamp)} taken as ms/µs/ns since the epoch")
        return seconds

    def _items(self, function: str, mapping: object) -> Any:
        """``mapping.items()`` as a tuple, or ``()`` (refused, counted) when it is not a readable mapping."""
        try:
            return tuple(mapping.items())  # type: ignore[attr-defined]
        except Exception as error:  # noqa: BLE001 - None, a list, a hostile mapping
            self._reject("call", function, f"takes a mapping, not {type(mapping).__name__}", error)
            return ()

    def _reject(self, kind: str, name: str, reason: str, error: BaseException | None = None) -> None:
        self._tally.reject(kind, name, reason)
        if self._strict:
            raise TypeError(f"tracelet: {kind} {name!r} rejected: {reason}") from error

    def _make_inert(self, *, inherited: bool = False) -> None:
        """Turn this run into one whose calls do nothing: in a forked child, or on a rank that does not log.

        No thread, lock or file of the parent's run is touched: ``log_*``
        calls return at once, ``flush()`` and ``stop()`` return ``True``.
        """
        self._inert = True
        self._inherited = inherited
        self._stopped = True
        self._stop_result = True
        self._stop_lock = threading.RLock()
        for child in self._children:  # a forked child inherits the open children too
            child._make_inert(inherited=inherited)

    def _raise_stopped(self) -> None:
        if self._inert:
            return
        raise TraceletError(f"run {self.name!r} ({self.id}) has stopped; call tracelet.start() to begin a new run")
