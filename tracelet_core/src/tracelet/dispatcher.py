"""The hook-driven worker pool that carries records from the training loop to backends.

::

    caller threads --append--> intake --router thread--> queue --worker thread--> backend A hooks
                                                     \\-> queue --worker thread--> backend B hooks

The caller's thread only appends an immutable item to the intake deque
(``deque.append`` is atomic; no lock is taken). The router thread turns the
hot path's plain metric tuples into :class:`~tracelet.records.Metric` records
and hands every item to each backend's bounded queue. Each backend has a
worker thread that starts the backend, then hands it batches of consecutive
records of one kind, in logging order, and catches whatever its hooks raise.
A slow or hung backend therefore delays only its own queue.

Flush and end requests travel through the same queues as records, so they
are handled after every record logged before them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs
import pluggy

from tracelet.info import BackendRunRef, RunInfo
from tracelet.log import get_logger
from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, RunStatus, Tag, Text

__all__ = ["BackendStats", "BackendWorker", "Dispatcher"]

_log = get_logger()

# Record type -> (routing hook, its argument name). Consecutive records that map to
# the same hook are delivered in one call.
_ROUTES: dict[type, tuple[str, str]] = {
    Metric: ("tracelet_backend_log_metrics", "metrics"),
    Param: ("tracelet_backend_log_params", "params"),
    Tag: ("tracelet_backend_set_tags", "tags"),
    Artifact: ("tracelet_backend_log_artifacts", "artifacts"),
    Image: ("tracelet_backend_log_media", "media"),
    Text: ("tracelet_backend_log_media", "media"),
    Histogram: ("tracelet_backend_log_media", "media"),
    Figure: ("tracelet_backend_log_media", "media"),
}


_METRIC_ROUTE = _ROUTES[Metric]
_MAX_DRAIN = 10_000  # items the router takes from the intake before handing them on
_SEGMENT_SIZE = 1_000  # records per segment: the granularity of dropping when a queue is full
_IDLE_WAIT = 0.5  # seconds; a safety net only, wake-ups come from events
_MAX_LOGGED_ERRORS = 20  # distinct errors logged per backend; later ones are only counted

WorkerState = Literal["starting", "running", "failed", "ended"]


class FlushRequest:
    """A flush travelling through every backend's queue; done when all have handled it."""

    __slots__ = ("_lock", "_pending", "done", "ok")

    def __init__(self, backends: int) -> None:
        self._lock = threading.Lock()
        self._pending = backends
        self.ok = True
        self.done = threading.Event()
        if backends == 0:
            self.done.set()

    def complete(self, ok: bool) -> None:
        with self._lock:
            self.ok = self.ok and ok
            self._pending -= 1
            if self._pending == 0:
                self.done.set()


@attrs.frozen
class _End:
    status: RunStatus


@attrs.frozen
class BackendStats:
    """Delivery figures of one backend, as returned by ``Run.stats()``."""

    name: str
    state: WorkerState
    run_id: str | None
    """The backend's own run id, once its start hook returned."""
    url: str | None
    delivered: int
    """Records handed to a routing hook that returned normally."""
    failed: int
    """Records handed to a hook that raised, or refused because the backend failed to start."""
    dropped: int
    """Records discarded because a queue was full, or undelivered at ``stop()``'s deadline."""
    queued: int
    batches: int
    """Routing hook calls that returned normally."""
    last_error: str | None
    latency: float | None
    """Seconds from logging to delivery of the oldest record in the last timestamped batch."""
    max_latency: float | None


class _Segment:
    """Consecutive records of one route, shared read-only by every backend's queue."""

    __slots__ = ("records", "route")

    def __init__(self, route: tuple[str, str], records: list[Any]) -> None:
        self.route = route
        self.records = records


class BackendWorker:
    """Delivers one backend's records on a thread of its own.

    Its queue holds :class:`_Segment` lists (built once by the router and
    shared by all workers) and control requests. Counters have one writer
    each, so no lock is needed: the router writes ``_routed`` and
    ``_evicted``, the worker writes ``_delivered`` and ``_failed``.
    """

    def __init__(
        self,
        name: str,
        hooks: pluggy.HookRelay,
        run_info: RunInfo,
        *,
        max_batch_size: int,
        queue_size: int,
        linger: float,
    ) -> None:
        self.name = name
        self._hooks = hooks
        self._run_info = run_info
        self._max_batch_size = max_batch_size
        self._queue_size = queue_size
        self._linger = linger
        self._queue: deque[object] = deque()
        self._wake = threading.Event()
        self._urgent = threading.Event()  # see put(): stop lingering
        self._hurry_at = max(1, min(max_batch_size, queue_size // 2))
        self._thread = threading.Thread(target=self._work, name=f"tracelet-backend-{name}", daemon=True)
        self._state: WorkerState = "starting"
        self._ref: BackendRunRef | None = None
        self._routed = 0
        self._evicted = 0
        self._lost_upstream = 0
        self._abandoned: int | None = None
        self._delivered = 0
        self._failed = 0
        self._batches = 0
        self._losses_at_last_flush = 0
        self._last_error: str | None = None
        self._logged_errors: set[str] = set()
        self._latency: float | None = None
        self._max_latency: float | None = None

    # --- router side ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def put(self, entries: Sequence[object], records: int) -> None:
        """Queue segments and requests holding ``records`` records (router thread only).

        Beyond ``queue_size`` queued records, the oldest segments are dropped
        and counted; requests are never counted against the limit.
        """
        queue = self._queue
        queue.extend(entries)
        self._routed += records
        if self._queued() >= self._hurry_at or any(type(entry) is not _Segment for entry in entries):
            self._urgent.set()  # a full batch, half a queue, a flush or the end is waiting: stop lingering
        while self._queued() > self._queue_size:
            try:
                entry = queue.popleft()
            except IndexError:  # the worker emptied it meanwhile
                break
            if isinstance(entry, _Segment):
                self._evicted += len(entry.records)
            elif isinstance(entry, FlushRequest):
                entry.complete(False)  # records before it were dropped
            else:  # the end request is the newest entry: keep it and stop dropping
                queue.appendleft(entry)
                break
        self._wake.set()

    def add_lost(self, count: int) -> None:
        """Count records lost before reaching this backend's queue (router thread only)."""
        self._lost_upstream += count

    def join(self, deadline: float) -> bool:
        """Wait for the worker to end, at most until ``deadline`` (``time.monotonic()``).

        A worker still busy then is abandoned: what it has not delivered is
        counted as dropped and it delivers nothing more.
        """
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abandoned = self._queued()
            return False
        return True

    def _queued(self) -> int:
        return self._routed - self._evicted - self._delivered - self._failed

    def stats(self) -> BackendStats:
        abandoned = self._abandoned or 0
        return BackendStats(
            name=self.name,
            state=self._state,
            run_id=self._ref.id if self._ref else None,
            url=self._ref.url if self._ref else None,
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._evicted + self._lost_upstream + abandoned,
            queued=0 if self._abandoned is not None else self._queued(),
            batches=self._batches,
            last_error=self._last_error,
            latency=self._latency,
            max_latency=self._max_latency,
        )

    @property
    def ref(self) -> BackendRunRef | None:
        return self._ref

    # --- worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        self._start_backend()
        while True:
            self._wake.clear()
            if not self._queue:
                self._wake.wait(_IDLE_WAIT)
                continue
            if self._linger and self._queued() < self._hurry_at:
                self._urgent.wait(self._linger)
            self._urgent.clear()
            if not self._deliver_queued():
                return

    def _start_backend(self) -> None:
        try:
            ref = self._hooks.tracelet_backend_start(run=self._run_info)
        except Exception as error:  # noqa: BLE001 - a backend's failure must not escape its worker
            self._state = "failed"
            self._record_error("tracelet_backend_start", error)
            return
        self._ref = ref if isinstance(ref, BackendRunRef) else None
        self._state = "running"

    def _deliver_queued(self) -> bool:
        """Deliver what is queued now, merging segments into batches; ``False`` after the end request."""
        queue = self._queue
        limit = self._max_batch_size
        batch: list[Any] = []
        route: tuple[str, str] | None = None
        while True:
            try:
                entry = queue.popleft()
            except IndexError:
                break
            if isinstance(entry, _Segment):
                if entry.route != route:
                    self._send(route, batch)
                    batch, route = [], entry.route
                batch.extend(entry.records)
                while len(batch) >= limit:
                    self._send(route, batch[:limit])
                    batch = batch[limit:]
                continue
            self._send(route, batch)  # a request: deliver what precedes it first
            batch, route = [], None
            if isinstance(entry, FlushRequest):
                entry.complete(self._flush())
            elif isinstance(entry, _End):
                self._end(entry.status)
                return False
        self._send(route, batch)
        return True

    def _send(self, route: tuple[str, str] | None, batch: list[Any]) -> None:
        if route is None or not batch or self._abandoned is not None:
            return
        if self._state != "running":
            self._failed += len(batch)
            return
        hook_name, argument = route
        try:
            getattr(self._hooks, hook_name)(**{argument: batch})
        except Exception as error:  # noqa: BLE001 - isolate the backend: count, log, carry on
            self._failed += len(batch)
            self._record_error(hook_name, error)
            return
        self._delivered += len(batch)
        self._batches += 1
        timestamp = getattr(batch[0], "timestamp", None)
        if timestamp is not None:
            self._latency = time.time() - timestamp
            self._max_latency = max(self._max_latency or 0.0, self._latency)

    def _flush(self) -> bool:
        ok = self._call_control("tracelet_backend_flush")
        losses = self._failed + self._evicted + self._lost_upstream
        ok = ok and losses == self._losses_at_last_flush
        self._losses_at_last_flush = losses
        return ok

    def _end(self, status: RunStatus) -> None:
        self._flush()
        self._call_control("tracelet_backend_end", status=status)
        if self._state == "running":
            self._state = "ended"

    def _call_control(self, hook_name: str, **arguments: object) -> bool:
        if self._state != "running" or self._abandoned is not None:
            return False
        try:
            getattr(self._hooks, hook_name)(**arguments)
        except Exception as error:  # noqa: BLE001 - isolate the backend
            self._record_error(hook_name, error)
            return False
        return True

    def _record_error(self, hook_name: str, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        self._last_error = f"{hook_name}: {message}"
        if message in self._logged_errors or len(self._logged_errors) >= _MAX_LOGGED_ERRORS:
            return
        self._logged_errors.add(message)
        _log.warning("backend hook failed", plugin=self.name, hook=hook_name, error=message, exc_info=error)


class Dispatcher:
    """Owns the intake, the router thread and the backend workers of one run."""

    def __init__(self, workers: Iterable[BackendWorker], intake_size: int, linger: float) -> None:
        self.workers = tuple(workers)
        self._linger = linger
        self.intake: deque[object] = deque(maxlen=intake_size)
        self.intake_dropped = 0
        """Incremented by the caller's thread when the intake is full (the oldest item is lost)."""
        self._wake_event = threading.Event()
        self._urgent = threading.Event()  # flush() or stop() is waiting, or the intake fills: stop lingering
        self.wake: Callable[[], None] = self._wake_event.set
        """Called by the thread whose record made the intake non-empty."""
        self.hurry: Callable[[], None] = self._urgent.set
        """Called by the thread whose record filled the intake to ``hurry_at``."""
        self.hurry_at = max(1, min(_MAX_DRAIN, intake_size // 4))
        self._closing: RunStatus | None = None
        self._routed_drops = 0
        self._thread = threading.Thread(target=self._route, name="tracelet-router", daemon=True)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self._thread.start()

    def submit(self, item: object) -> None:
        """Queue one record or request (any thread)."""
        intake = self.intake
        size = len(intake)
        if size == intake.maxlen:
            self.intake_dropped += 1
        intake.append(item)
        if size == 0:
            self.wake()
        elif size == self.hurry_at:
            self.hurry()

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything submitted before the call was delivered; ``False`` on timeout or loss."""
        request = FlushRequest(len(self.workers))
        self.submit(request)
        self._urgent.set()
        return request.done.wait(timeout) and request.ok

    def stop(self, status: RunStatus, deadline: float) -> bool:
        """Deliver what is queued, end every backend with ``status``, return by ``deadline``.

        Returns ``True`` when every backend ended in time. A backend still
        busy at the deadline is abandoned (its thread is a daemon) and its
        undelivered records are counted as dropped.
        """
        self._closing = status
        self._urgent.set()
        self.wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        ended = [worker.join(deadline) for worker in self.workers]
        return not self._thread.is_alive() and all(ended)

    def _route(self) -> None:
        intake = self.intake
        while True:
            self._wake_event.clear()
            if not intake and self._closing is None:
                self._wake_event.wait(_IDLE_WAIT)
                continue
            if self._linger and len(intake) < _MAX_DRAIN:
                # Let records gather after an idle spell: one wake-up per linger period instead of
                # one per record keeps thread switches (each a GIL hand-off) away from a training
                # loop that logs at a moderate rate. A busy intake is drained without pause.
                self._urgent.wait(self._linger)
            self._urgent.clear()
            while True:
                entries, records = self._drain()
                self._count_intake_losses()
                if not entries:
                    break
                for worker in self.workers:
                    worker.put(entries, records)
            if self._closing is not None and not intake:
                break
        end = [_End(self._closing)]
        for worker in self.workers:
            worker.put(end, 0)

    def _count_intake_losses(self) -> None:
        lost = self.intake_dropped - self._routed_drops
        if lost:
            self._routed_drops += lost
            for worker in self.workers:
                worker.add_lost(lost)

    def _drain(self) -> tuple[list[object], int]:
        """Take up to ``_MAX_DRAIN`` items: runs of one route become segments, requests stay apart."""
        take = self.intake.popleft
        new_metric = tuple.__new__
        entries: list[object] = []
        segment: list[Any] = []
        route: tuple[str, str] | None = None
        item_route: tuple[str, str] | None
        records = 0
        for _ in range(_MAX_DRAIN):
            try:
                item = take()
            except IndexError:
                break
            if type(item) is tuple:  # the hot path's metric
                item, item_route = new_metric(Metric, item), _METRIC_ROUTE
            else:
                item_route = _ROUTES.get(type(item))
                if item_route is None:
                    entries.append(item)
                    route = None
                    continue
            if item_route is not route or len(segment) >= _SEGMENT_SIZE:
                segment, route = [], item_route
                entries.append(_Segment(item_route, segment))
            segment.append(item)
            records += 1
        return entries, records
