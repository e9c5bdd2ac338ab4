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

Nothing is dropped for a backend that cannot keep up (see ``docs/reliability.md``):
a failed call is retried with backoff; after too many failures the backend's
circuit breaker opens; and whenever its queue is full, its breaker is open or
its oldest record waited longer than ``spool_after``, the backend switches to
its :class:`~tracelet.spool.BackendSpool`: what is queued in memory moves to
disk, newer records are appended there, and the worker reads them back in
order until it has caught up, then switches back to memory.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs
import pluggy

from tracelet.delivery import BreakerState, CircuitBreaker, DeliveryPolicy
from tracelet.errors import PermanentError
from tracelet.info import BackendRunRef, RunInfo
from tracelet.log import get_logger
from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, RunStatus, Tag, Text
from tracelet.redact import Redactor
from tracelet.spool import BackendSpool, SpoolPosition, encode_records
from tracelet.values import Tally, name_label, to_name

__all__ = ["BackendStats", "BackendWorker", "Dispatcher", "route_of"]

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


def route_of(record: object) -> tuple[str, str]:
    """The routing hook that takes ``record``, and the name of its argument."""
    return _ROUTES[type(record)]


_METRIC_ROUTE = _ROUTES[Metric]
_MAX_DRAIN = 10_000  # items the router takes from the intake before handing them on
_SEGMENT_SIZE = 1_000  # records per segment: the unit the router hands on and spools
_IDLE_WAIT = 0.5  # seconds; a safety net only, wake-ups come from events
_TICK = 0.25  # seconds between the router's checks for stuck backends and spool syncs
_MAX_LOGGED_ERRORS = 20  # distinct errors logged per backend; later ones are only counted

WorkerState = Literal["starting", "running", "failed", "ended"]


class _Outcome(enum.Enum):
    DONE = "done"
    """The hook returned (or the backend failed for good and the records were counted as failed)."""
    REJECTED = "rejected"
    """The hook raised PermanentError: the batch went to the spool's rejected part."""
    DIVERTED = "diverted"
    """Retries ran out or the breaker is open: the records belong in the spool."""


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
    deadline: float
    """``time.monotonic()`` by which ``stop()`` returns."""


class _Marker:
    """A request queued while its backend reads from the spool: due once reading has passed ``position``."""

    __slots__ = ("position", "request")

    def __init__(self, request: object, position: SpoolPosition) -> None:
        self.request = request
        self.position = position


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
    """Records the backend refused for good (``PermanentError``, kept in the spool's rejected part),
    or refused because the backend failed permanently to start."""
    dropped: int
    """Records lost: the intake overflowed, or the spool could not be written."""
    queued: int
    """Records waiting in memory."""
    batches: int
    """Routing hook calls that returned normally."""
    last_error: str | None
    latency: float | None
    """Seconds from logging to delivery of the oldest record in the last timestamped batch."""
    max_latency: float | None
    spooled: int = 0
    """Records on disk, not delivered yet (``tracelet replay`` sends them if this run does not)."""
    retries: int = 0
    """Hook calls that failed with a transient error and were retried or diverted."""
    breaker: str = "closed"
    """The circuit breaker: ``closed``, ``open`` or ``half-open``."""


class _Segment:
    """Consecutive records of one route, shared read-only by every backend's queue."""

    __slots__ = ("_frames", "records", "route", "routed_at")

    def __init__(self, route: tuple[str, str], records: list[Any], routed_at: float) -> None:
        self.route = route
        self.records = records
        self.routed_at = routed_at
        self._frames: bytes | None = None

    def frames(self) -> bytes:
        """The records in spool format, encoded once for every backend that spools them."""
        if self._frames is None:
            self._frames = encode_records(self.records)[0]
        return self._frames


class BackendWorker:
    """Delivers one backend's records on a thread of its own.

    Its queue holds :class:`_Segment` lists (built once by the router and
    shared by all workers) and control requests. ``_lock`` is shared by the
    router, the worker and ``stop()`` only (never the training loop): it
    guards the hand-over between memory and spool, the spool itself and the
    counters they change. Counters outside the lock have one writer each.
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
        spool: BackendSpool,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.name = name
        self._hooks = hooks
        self._run_info = attrs.evolve(run_info, backend=name)
        self._max_batch_size = max_batch_size
        self._queue_size = queue_size
        self._linger = linger
        self._spool = spool
        self._policy = policy or DeliveryPolicy()
        self._breaker = CircuitBreaker(self._policy.breaker_threshold, self._policy.breaker_cooldown)
        self._lock = threading.Lock()
        self._queue: deque[object] = deque()
        self._wake = threading.Event()
        self._urgent = threading.Event()  # see put(): stop lingering
        self._hurry_at = max(1, min(max_batch_size, queue_size // 2))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"tracelet-backend-{name}", daemon=True)
        self._state: WorkerState = "starting"
        self._ref: BackendRunRef | None = None
        self._spooling = False
        self._end: _End | None = None
        self._abandoned = False
        self._in_hand: list[Any] = []
        self._in_hand_since = 0.0
        self._in_hand_file: tuple[int, list[int]] | None = None
        # under _lock
        self._memory = 0
        self._dropped = 0
        # one writer each
        self._lost_upstream = 0  # router
        self._delivered = 0  # worker
        self._failed = 0  # worker
        self._retries = 0  # worker
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

        Beyond ``queue_size`` records in memory the backend switches to its
        spool; requests are never counted against the limit.
        """
        with self._lock:
            for entry in entries:
                if isinstance(entry, _End):
                    self._end = entry
            if self._is_abandoned():
                self._dropped += records
            elif self._spooling:
                self._spill(entries)
            else:
                self._queue.extend(entries)
                self._memory += records
                if self._memory > self._queue_size:
                    self._start_spooling()
            if self._memory >= self._hurry_at or any(type(entry) is not _Segment for entry in entries):
                self._urgent.set()  # a full batch, half a queue, a flush or the end is waiting: stop lingering
        self._wake.set()

    def add_lost(self, count: int) -> None:
        """Count records lost before reaching this backend's queue (router thread only)."""
        self._lost_upstream += count

    def tick(self, now: float) -> None:
        """Router thread, a few times a second: spool what waited too long, sync the spool."""
        with self._lock:
            if self._is_abandoned():
                return
            limit = self._policy.spool_after
            if self._in_hand and now - self._in_hand_since > limit:
                self._spool_in_hand()  # the worker is stuck in a hook with these records
            if (
                not self._spooling
                and self._queue
                and isinstance(head := self._queue[0], _Segment)
                and now - head.routed_at > limit
            ):
                self._start_spooling()
            self._guard(self._spool.maybe_sync)

    def join(self, deadline: float) -> bool:
        """Wait for the worker to end, at most until ``deadline`` (``time.monotonic()``).

        A worker still busy then is abandoned: it delivers nothing more, and
        what it has not delivered is written to the spool for ``tracelet replay``.
        """
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():
            return True
        with self._lock:
            self._abandoned = True
            self._stopping.set()
            self._spool_in_hand()
            self._start_spooling()
            for entry in self._queue:
                request = entry.request if isinstance(entry, _Marker) else entry
                if isinstance(request, FlushRequest):
                    request.complete(False)
            self._queue.clear()
            self._guard(self._spool.close, self._end.status if self._end else None)
        return False

    def _spill(self, entries: Iterable[object]) -> None:
        """Append records to the spool; requests wait in memory for reading to reach them (lock held)."""
        for entry in entries:
            if isinstance(entry, _Segment):
                if not self._guard(self._spool.append, entry.frames(), len(entry.records)):
                    self._dropped += len(entry.records)
            else:
                self._queue.append(_Marker(entry, self._spool.position()))

    def _start_spooling(self) -> None:
        """Move what is queued in memory to the spool and send newer records there (lock held)."""
        if self._spooling:
            return
        entries = [entry.request if isinstance(entry, _Marker) else entry for entry in self._queue]
        self._queue.clear()
        self._memory = 0
        self._spooling = True
        self._spill(entries)

    def _spool_in_hand(self) -> None:
        """Write the records the worker holds (maybe stuck in a hook) at the head of the spool (lock held)."""
        if self._in_hand and self._in_hand_file is None:
            written = self._guard(self._spool.prepend, list(self._in_hand))
            if written:
                self._in_hand_file = written
            else:
                self._dropped += len(self._in_hand)

    def _guard(self, action: Callable[..., Any], *arguments: Any) -> Any:
        """Run a spool operation; an OSError (disk full) is logged once and reported as a falsy result."""
        try:
            return action(*arguments) or True
        except OSError as error:
            self._record_error("spool", error)
            return None

    def _queued(self) -> int:
        return self._memory + (len(self._in_hand) if self._in_hand_file is None else 0)

    def stats(self) -> BackendStats:
        return BackendStats(
            name=self.name,
            state=self._state,
            run_id=self._ref.id if self._ref else None,
            url=self._ref.url if self._ref else None,
            delivered=self._delivered,
            failed=self._failed,
            dropped=self._dropped + self._lost_upstream,
            queued=0 if self._abandoned else self._queued(),
            batches=self._batches,
            last_error=self._last_error,
            latency=self._latency,
            max_latency=self._max_latency,
            spooled=self._spool.pending,
            retries=self._retries,
            breaker=self._breaker.state.value,
        )

    @property
    def ref(self) -> BackendRunRef | None:
        return self._ref

    # --- worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        if not self._ensure_started():
            with self._lock:
                self._start_spooling()
        while not self._abandoned:
            self._wake.clear()
            if self._spooling:
                if not self._work_spooled():
                    return
                continue
            if not self._queue:
                self._wake.wait(_IDLE_WAIT)
                continue
            if self._linger and self._memory < self._hurry_at:
                self._urgent.wait(self._linger)
            self._urgent.clear()
            if not self._work_queued():
                return

    def _ensure_started(self) -> bool:
        """Start the backend if needed (with retries); ``False`` while it cannot be started."""
        if self._state != "starting":
            return True
        outcome = self._call("tracelet_backend_start", {"run": self._run_info})
        if outcome is _Outcome.DIVERTED:
            return False
        if outcome is _Outcome.REJECTED:
            self._state = "failed"
            return True
        ref = self._result
        self._ref = ref if isinstance(ref, BackendRunRef) else None
        self._state = "running"
        with self._lock:
            if not self._abandoned:
                self._guard(self._spool.set_ref, self._ref)
        return True

    def _work_queued(self) -> bool:
        """Deliver what is queued in memory now; ``False`` after the end request."""
        records: list[Any] = []
        request: object = None
        with self._lock:
            if self._spooling or self._abandoned:
                return not self._abandoned
            queue = self._queue
            while queue and len(records) < self._max_batch_size:
                entry = queue.popleft()
                if isinstance(entry, _Segment):
                    records.extend(entry.records)
                    self._memory -= len(entry.records)
                else:
                    request = entry.request if isinstance(entry, _Marker) else entry
                    break
            self._in_hand = records
            self._in_hand_since = time.monotonic()
            self._in_hand_file = None
        delivered_all = self._deliver_in_hand()
        if request is None:
            return True
        return self._handle_request(request, delivered_all)

    def _deliver_in_hand(self) -> bool:
        """Deliver the records taken from memory; ``False`` when some of them went to the spool instead."""
        records = self._in_hand
        start = 0
        while start < len(records):
            route = _ROUTES[type(records[start])]
            stop = start + 1
            while stop < len(records) and stop - start < self._max_batch_size and _ROUTES[type(records[stop])] is route:
                stop += 1
            outcome = self._deliver(route, records[start:stop])
            with self._lock:
                if self._is_abandoned():
                    return False
                if self._in_hand_file is not None:  # tick() spooled what we hold while we were busy
                    segment_id, ends = self._in_hand_file
                    if outcome is not _Outcome.DIVERTED:
                        self._spool.ack(segment_id, ends[stop - start - 1], stop - start)
                    self._in_hand = []
                    return False
                if outcome is _Outcome.DIVERTED:
                    self._spool_in_hand()
                    self._start_spooling()
                    self._in_hand = []
                    return False
                self._in_hand = records[stop:]
            records = self._in_hand
            start = 0
        return True

    def _work_spooled(self) -> bool:
        """Handle due requests, then deliver one batch from the spool; ``False`` after the end request."""
        now = time.monotonic()
        due: list[object] = []
        with self._lock:
            if self._is_abandoned():
                return False
            open_breaker = self._breaker.state is BreakerState.OPEN
            while self._queue:
                marker = self._queue[0]
                assert isinstance(marker, _Marker)
                if self._spool.reached(marker.position):
                    self._queue.popleft()
                    due.append(marker.request)
                elif open_breaker and isinstance(marker.request, FlushRequest):
                    self._queue.popleft()
                    marker.request.complete(False)  # the backend is down: the flush cannot succeed now
                else:
                    break
            if not self._queue and self._spool.drained():
                self._guard(self._spool.reset_tail)
                self._spooling = False  # caught up: newer records stay in memory again
        for request in due:
            if not self._handle_request(request, True):
                return False
        if not self._spooling:
            return True
        wait = self._breaker.wait(now)
        if wait or (self._state == "starting" and not self._ensure_started()):
            end = self._end
            if end is not None and now + wait >= end.deadline:
                return self._give_up()  # the backend will not be back before stop()'s deadline
            self._wake.wait(min(wait or _IDLE_WAIT, _IDLE_WAIT))
            return True
        with self._lock:
            if self._is_abandoned():
                return False
            records, segment_id, ends = self._guard(self._spool.read, self._max_batch_size) or ([], 0, [])
        if not records:
            self._wake.wait(_TICK)
            return True
        outcome = self._deliver(_ROUTES[type(records[0])], records)
        with self._lock:
            if self._is_abandoned():
                return False
            if outcome is not _Outcome.DIVERTED:
                self._guard(self._spool.ack, segment_id, ends[-1], len(records))
        return True

    def _give_up(self) -> bool:
        """Leave the backend's records in the spool for ``tracelet replay`` and end this worker."""
        with self._lock:
            if not self._abandoned:
                for entry in self._queue:
                    if isinstance(entry, _Marker) and isinstance(entry.request, FlushRequest):
                        entry.request.complete(False)
                self._queue.clear()
                self._guard(self._spool.close, self._end.status if self._end else None)
                self._abandoned = True
        _log.warning(
            "backend unreachable at stop(); its records stay in the spool for `tracelet replay`",
            plugin=self.name,
            spooled=self._spool.pending,
            spool=str(self._spool.directory),
        )
        return False

    def _handle_request(self, request: object, ok: bool) -> bool:
        """Handle a flush or end request; ``ok`` is False when records before it went to the spool."""
        if isinstance(request, FlushRequest):
            request.complete(ok and self._flush())
            return True
        if isinstance(request, _End):
            if not ok:  # what precedes it is in the spool: end after the spool has been delivered
                with self._lock:
                    self._queue.appendleft(_Marker(request, self._spool.position()))
                return True
            self._finish(request.status)
            return False
        return True

    def _deliver(self, route: tuple[str, str], batch: list[Any]) -> _Outcome:
        if self._state == "failed":
            self._failed += len(batch)
            return _Outcome.DONE
        if not self._ensure_started():
            return _Outcome.DIVERTED
        if self._is_failed():
            self._failed += len(batch)
            return _Outcome.DONE
        hook_name, argument = route
        outcome = self._call(hook_name, {argument: batch})
        if outcome is _Outcome.DONE:
            self._delivered += len(batch)
            self._batches += 1
            timestamp = getattr(batch[0], "timestamp", None)
            if timestamp is not None:
                self._latency = time.time() - timestamp
                self._max_latency = max(self._max_latency or 0.0, self._latency)
        elif outcome is _Outcome.REJECTED:
            self._failed += len(batch)
            with self._lock:
                if not self._abandoned and not self._guard(self._spool.reject, batch):
                    self._dropped += len(batch)
        return outcome

    def _call(self, hook_name: str, arguments: dict[str, Any]) -> _Outcome:
        """Call a hook with retries, backoff and the breaker; the hook's return value lands in ``_result``."""
        attempt = 0
        while not self._abandoned:
            now = time.monotonic()
            if not self._breaker.allow(now):
                return _Outcome.DIVERTED
            try:
                self._result = getattr(self._hooks, hook_name)(**arguments)
            except PermanentError as error:
                self._record_error(hook_name, error)
                self._breaker.success()  # the backend answered: it is up, this batch is the problem
                return _Outcome.REJECTED
            except Exception as error:  # noqa: BLE001 - isolate the backend: count, log, retry
                self._record_error(hook_name, error)
                self._retries += 1
                attempt += 1
                self._breaker.failure(now)
                if self._breaker.state is BreakerState.OPEN:
                    return _Outcome.DIVERTED
                if attempt >= self._policy.retry_attempts:
                    self._breaker.trip(now)
                    return _Outcome.DIVERTED
                delay = self._policy.backoff(attempt)
                if self._end is not None:
                    delay = min(delay, self._end.deadline - time.monotonic())
                if delay <= 0 or self._stopping.wait(delay):
                    return _Outcome.DIVERTED
                continue
            self._breaker.success()
            return _Outcome.DONE
        return _Outcome.DIVERTED

    _result: object = None

    def _is_abandoned(self) -> bool:
        # a method, not the attribute: another thread sets it (and mypy must not narrow it)
        return self._abandoned

    def _is_failed(self) -> bool:
        return self._state == "failed"

    def _flush(self) -> bool:
        ok = self._call_control("tracelet_backend_flush")
        losses = self._failed + self._dropped + self._lost_upstream
        ok = ok and losses == self._losses_at_last_flush
        self._losses_at_last_flush = losses
        return ok

    def _finish(self, status: RunStatus) -> None:
        self._flush()
        self._call_control("tracelet_backend_end", status=status)
        if self._state == "running":
            self._state = "ended"
        with self._lock:
            if not self._abandoned:
                self._guard(self._spool.close, status)

    def _call_control(self, hook_name: str, **arguments: object) -> bool:
        if self._state != "running" or self._abandoned:
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

    def __init__(
        self,
        workers: Iterable[BackendWorker],
        intake_size: int,
        linger: float,
        redactor: Redactor | None = None,
        full_wait: float = 0.0,
    ) -> None:
        self.workers = tuple(workers)
        self._redactor = redactor
        self.tally = Tally()
        """Values refused or changed, on the caller's threads and on the router (shared with the Run)."""
        self.redacted = 0
        """Records whose secrets the router masked."""
        self.intake: deque[object] = deque(maxlen=intake_size)
        self.intake_dropped = 0
        """Incremented by the caller's thread when the intake is full (the oldest item is lost)."""
        self._full_wait = full_wait
        self._room = threading.Event()  # set by the router after each drain
        self._stalled = False  # a wait for room timed out: drop instead of waiting until the router drains again
        self._linger = linger
        self._wake_event = threading.Event()
        self._urgent = threading.Event()  # flush() or stop() is waiting, or the intake fills: stop lingering
        self.wake: Callable[[], None] = self._wake_event.set
        """Called by the thread whose record made the intake non-empty."""
        self.hurry: Callable[[], None] = self._urgent.set
        """Called by the thread whose record filled the intake to ``hurry_at``."""
        self.hurry_at = max(1, min(_MAX_DRAIN, intake_size // 4))
        self._closing: RunStatus | None = None
        self._deadline = 0.0
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
            size = self.make_room()
        intake.append(item)
        if size == 0:
            self.wake()
        elif size == self.hurry_at:
            self.hurry()

    def make_room(self) -> int:
        """The intake is full: wait up to ``full_wait`` seconds for the router to drain it; return its length.

        Called on the logging thread, only when a loop logs faster than the
        router can route (over a million records a second, or a spool on a
        disk slower than that). Waiting there for a few milliseconds is what
        keeps every record; if the router has not drained within
        ``full_wait`` (it is stuck), the oldest record is dropped and counted,
        and later calls drop without waiting until the router drains again.
        """
        if self._full_wait and not self._stalled and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._room.clear()
            self._urgent.set()
            self._wake_event.set()
            if not self._room.wait(self._full_wait):
                self._stalled = True
        size = len(self.intake)
        if size == self.intake.maxlen:
            self.intake_dropped += 1
        return size

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
        undelivered records are written to its spool.
        """
        self._deadline = deadline
        self._closing = status
        self._urgent.set()
        self.wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        ended = [worker.join(deadline) for worker in self.workers]
        return not self._thread.is_alive() and all(ended)

    def _route(self) -> None:
        intake = self.intake
        next_tick = time.monotonic() + _TICK
        idle = True
        while True:
            self._wake_event.clear()
            if idle and intake and self._linger:
                # After an idle spell, let records gather: one wake-up per linger period instead of one
                # per record keeps thread switches (each a GIL hand-off, which costs a torch training
                # loop far more than the work done) away from a loop that logs at a moderate rate.
                # A busy intake is drained without pause.
                self._urgent.wait(self._linger)
            self._urgent.clear()
            entries, records = self._drain()
            if entries:
                self._stalled = False
                self._room.set()  # a logging thread may be waiting for room in the intake
            lost = self.intake_dropped - self._routed_drops
            if lost:
                self._routed_drops += lost
                for worker in self.workers:
                    worker.add_lost(lost)
            if entries:
                for worker in self.workers:
                    worker.put(entries, records)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + _TICK
                for worker in self.workers:
                    worker.tick(now)
            idle = not entries
            if entries:
                continue
            if self._closing is not None:
                break
            self._wake_event.wait(_TICK)
        end = [_End(self._closing, self._deadline)]
        for worker in self.workers:
            worker.put(end, 0)

    def _drain(self) -> tuple[list[object], int]:
        """Take up to ``_MAX_DRAIN`` items: runs of one route become segments, requests stay apart."""
        take = self.intake.popleft
        new_metric = tuple.__new__
        now = time.monotonic()
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
                name = item[0]
                if type(name) is not str or not name:  # checked here, not on the caller's thread
                    item = self._renamed(item, name)
                    if item is None:
                        continue
                item, item_route = new_metric(Metric, item), _METRIC_ROUTE
            else:
                item_route = _ROUTES.get(type(item))
                if item_route is None:
                    entries.append(item)
                    route = None
                    continue
                item = self._sanitised(item)
                if item is None:
                    continue
            if item_route is not route or len(segment) >= _SEGMENT_SIZE:
                segment, route = [], item_route
                entries.append(_Segment(item_route, segment, now))
            segment.append(item)
            records += 1
        return entries, records

    def _renamed(self, item: Any, name: object) -> Any:
        """``item`` (a record or a metric tuple) with a non-str name as str; ``None`` when refused."""
        kind = "metric" if type(item) is tuple or type(item) is Metric else type(item).__name__.lower()
        checked = to_name(name)
        if checked is None:
            self.tally.reject(kind, name_label(name), "a name must be a non-empty string")
            return None
        self.tally.normalise(kind, checked, f"a {type(name).__name__} name; str() of it used")
        if type(item) is tuple:
            return (checked, *item[1:])
        if type(item) is Metric:
            return item._replace(name=checked)
        return attrs.evolve(item, name=checked)

    def _sanitised(self, record: Any) -> Any:
        """A record from ``log_record``, a collector or the logging API: name checked, secrets masked.

        Runs on the router thread, the one point every record passes before
        any backend queue, the spool or a plugin sees it.
        """
        name = record.name
        if type(name) is not str or not name:
            record = self._renamed(record, name)
            if record is None:
                return None
        if self._redactor is not None:
            masked = self._redactor.record(record)
            if masked is not record:
                self.redacted += 1
                return masked
        return record
