"""One backend's worker: delivers its records on a thread of its own, in order, whatever the backend does.

The router (:mod:`tracelet.dispatcher`) hands each worker shared, read-only
segments of records and control requests (flush, end). The worker starts the
backend, hands it batches of consecutive records of one kind, in logging
order, and isolates it from the rest of the run:

- a failed call is retried with backoff; after too many failures the
  backend's circuit breaker opens (:mod:`tracelet.delivery`);
- whenever its queue is full, its breaker is open or its oldest record waited
  longer than ``spool_after``, the backend switches to its
  :class:`~tracelet.spool.BackendSpool`: what is queued in memory moves to
  disk, newer records are appended there, and the worker reads them back in
  order until it has caught up, then switches back to memory;
- a batch that keeps failing while the backend is otherwise healthy is split
  until the records that fail alone are found (poison isolation): those are
  set aside in the spool's rejected part, counted and named once, and the
  rest flows on;
- nothing a hook raises (``SystemExit`` included) and no internal error ends
  the thread: the records it held go to the spool and delivery goes on. If
  the thread dies anyway, that is logged, shown in ``stats()``, its records
  go to the spool and ``stop()`` does not wait for it.
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
from tracelet.lifecycle import block_process_signals
from tracelet.log import get_logger
from tracelet.records import ROUTES, RunStatus
from tracelet.redact import scrub
from tracelet.spool import BackendSpool, SpoolPosition, encode_records
from tracelet.values import name_label

__all__ = ["BackendStats", "BackendWorker", "End", "FlushRequest", "Segment"]

_log = get_logger()

_IDLE_WAIT = 0.5  # seconds; a safety net only, wake-ups come from events
_TICK = 0.25  # seconds a worker reading an empty spool waits before looking again
_MAX_LOGGED_ERRORS = 20  # distinct errors logged per backend; later ones are only counted
_MAX_INTERNAL_ERRORS = 10  # consecutive unexpected errors in the worker's own code before it gives up
PARENT_WAIT = 30.0  # seconds a child run's backend waits for its parent's run in that backend to start
LATENCY_WINDOW = 1024  # batch latencies kept for Tracelet's own metrics, between two samples

WorkerState = Literal["starting", "running", "failed", "ended"]


class _Outcome(enum.Enum):
    DONE = "done"
    """The hook returned (or the backend failed for good and the records were counted as failed)."""
    REJECTED = "rejected"
    """The hook raised PermanentError: the batch went to the spool's rejected part."""
    DIVERTED = "diverted"
    """Retries ran out or the breaker is open: the records belong in the spool."""


class FlushRequest:
    """A flush travelling through every backend's queue; done when all have handled it.

    Each backend completes it once (a second completion by the same backend,
    which a dying worker may make, changes nothing).
    """

    __slots__ = ("_lock", "_pending", "done", "ok")

    def __init__(self, backends: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self._pending = set(backends)
        self.ok = True
        self.done = threading.Event()
        if not self._pending:
            self.done.set()

    def complete(self, backend: str, ok: bool) -> None:
        with self._lock:
            if backend not in self._pending:
                return
            self.ok = self.ok and ok
            self._pending.discard(backend)
            if not self._pending:
                self.done.set()


@attrs.frozen
class End:
    """The run's end, queued after its last record: the worker ends the backend's run with ``status``."""

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
    """Records the backend refused for good (``PermanentError``, or a poison record that failed alone while the
    rest of its batch was delivered): kept in the spool's rejected part; also records refused because the
    backend failed permanently to start."""
    dropped: int
    """Records lost: the intake stayed full while the router was stuck, the spool could not be written, or
    they were logged on another thread while ``stop()`` was ending the run."""
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
    isolated: int = 0
    """Poison records found by splitting a failing batch (included in ``failed``)."""
    thread_error: str | None = None
    """Set when the worker's thread died (an internal error): its records went to the spool."""


class Segment:
    """Consecutive records of one route, shared read-only by every backend's queue."""

    __slots__ = ("_encoded", "records", "route", "routed_at")

    def __init__(self, route: tuple[str, str], records: list[Any], routed_at: float) -> None:
        self.route = route
        self.records = records
        self.routed_at = routed_at
        self._encoded: tuple[bytes, int, list[Any]] | None = None

    def frames(self) -> tuple[bytes, int, list[Any]]:
        """The records in spool format (encoded once for every backend that spools them), their count,
        and the records that could not be encoded (none, unless a record escaped the checks at the door)."""
        if self._encoded is None:
            try:
                self._encoded = (encode_records(self.records)[0], len(self.records), [])
            except Exception:  # noqa: BLE001 - one bad record must not keep the others off the disk
                good, bad = [], []
                for record in self.records:
                    try:
                        encode_records([record])
                    except Exception:  # noqa: BLE001
                        bad.append(record)
                    else:
                        good.append(record)
                self._encoded = (encode_records(good)[0], len(good), bad)
        return self._encoded


def _suspect_key(record: Any) -> tuple[object, ...]:
    """What identifies a record across reads of the spool (a decoded copy is equal in these fields)."""
    return (type(record), record.name, getattr(record, "step", None), getattr(record, "timestamp", None))


def _halves(records: list[Any]) -> list[list[Any]]:
    middle = len(records) // 2
    return [records[:middle], records[middle:]]


class BackendWorker:
    """Delivers one backend's records on a thread of its own.

    Its queue holds :class:`Segment` lists (built once by the router and
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
        on_started: Callable[[str, BackendRunRef | None], object] | None = None,
        parent: BackendWorker | None = None,
    ) -> None:
        """``on_started(name, ref)`` is called on the worker's thread once the backend started (the run index)."""
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
        self._thread_error: str | None = None
        self._state: WorkerState = "starting"
        self._ref: BackendRunRef | None = None
        self._on_started = on_started
        # A resumed run's spool may hold what the previous process could not deliver: it goes first, in order.
        self._spooling = not spool.drained()
        self._end: End | None = None
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
        self._isolated = 0  # worker
        self._exhausted = False  # worker: the last _call failed its batch itself (not a breaker already open)
        self._damage_seen = 0  # under _lock: entries of the spool's damaged list already counted
        self._suspect: tuple[object, ...] | None = None  # worker: the record that last failed alone (see _isolate)
        self._batches = 0
        self._losses_at_last_flush = 0
        self._last_error: str | None = None
        self._logged_errors: set[str] = set()
        self._latency: float | None = None
        self._max_latency: float | None = None
        self._parent = parent
        """A child run's: the parent run's worker of the same backend, until its ref is known (see _with_parent)."""
        self.started = threading.Event()
        """Set once the backend's start hook returned or failed for good, or the worker ended: what a child waits for."""
        self._latencies: deque[float] | None = None
        """Seconds from logging to delivery, one per delivered batch: only while Tracelet's own metrics are on."""

    # --- router side ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def measure_latency(self) -> None:
        """Keep each delivered batch's latency for :meth:`take_latencies` (Tracelet's own metrics; off by default)."""
        self._latencies = deque(maxlen=LATENCY_WINDOW)

    def take_latencies(self) -> list[float]:
        """The batch latencies kept since the last call (at most ``LATENCY_WINDOW``, the newest); any thread."""
        if self._latencies is None:
            return []
        taken, self._latencies = self._latencies, deque(maxlen=LATENCY_WINDOW)
        return list(taken)

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    def put(self, entries: Sequence[object], records: int) -> None:
        """Queue segments and requests holding ``records`` records (router thread only).

        Beyond ``queue_size`` records in memory the backend switches to its
        spool; requests are never counted against the limit.
        """
        with self._lock:
            for entry in entries:
                if isinstance(entry, End):
                    self._end = entry
            if self._is_abandoned():
                self._dropped += records
            elif self._thread_error is not None:  # the worker is gone: records to disk, requests answered now
                self._start_spooling()
                self._spill(entry for entry in entries if isinstance(entry, Segment))
                for entry in entries:
                    if isinstance(entry, FlushRequest):
                        entry.complete(self.name, False)
            elif self._spooling:
                self._spill(entries)
            else:
                self._queue.extend(entries)
                self._memory += records
                if self._memory > self._queue_size:
                    self._start_spooling()
            if self._memory >= self._hurry_at or any(type(entry) is not Segment for entry in entries):
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
                and isinstance(head := self._queue[0], Segment)
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
            if self._thread_error is None:
                return True
            with self._lock:  # it died: what it held is on disk; close the spool with the run's status
                if not self._abandoned:
                    self._abandoned = True
                    self._guard(self._spool.close, self._end.status if self._end else None)
            return False
        with self._lock:
            self._abandoned = True
            self._stopping.set()
            self._spool_in_hand()
            self._start_spooling()
            for entry in self._queue:
                request = entry.request if isinstance(entry, _Marker) else entry
                if isinstance(request, FlushRequest):
                    request.complete(self.name, False)
            self._queue.clear()
            self._guard(self._spool.close, self._end.status if self._end else None)
        return False

    def alive(self) -> bool:
        """Whether the worker's thread runs (it may have ended the backend already)."""
        return self._thread.is_alive()

    def wait_until(self, deadline: float) -> None:
        """Wait for the thread to end, at most until ``deadline`` (``time.monotonic()``); abandon nothing."""
        self._thread.join(max(0.0, deadline - time.monotonic()))

    def _spill(self, entries: Iterable[object]) -> None:
        """Append records to the spool; requests wait in memory for reading to reach them (lock held)."""
        for entry in entries:
            if isinstance(entry, Segment):
                frames, count, bad = entry.frames()
                if bad:  # lost: counted as dropped (lock held; _failed has the worker as its one writer)
                    self._dropped += len(bad)
                    self._record_error("spool", TypeError(f"{len(bad)} record(s) could not be encoded; first: {bad[0]!r:.200}"))
                if count and not self._guard(self._spool.append, frames, count):
                    self._dropped += count
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
        """Run a spool operation; an error (disk full, a damaged file) is logged once and reported as a falsy result."""
        try:
            return action(*arguments) or True
        except Exception as error:  # noqa: BLE001 - OSError mostly; nothing in the spool may end the thread
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
            isolated=self._isolated,
            thread_error=self._thread_error,
        )

    @property
    def ref(self) -> BackendRunRef | None:
        return self._ref

    # --- worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        """The thread: deliver until the end request; survive every error, and never die silently."""
        block_process_signals()
        try:
            self._work_loop()
        except BaseException as error:  # noqa: BLE001 - the last resort: the records go to disk, stop() is told
            self._died(error)
        finally:
            self.started.set()  # a child waiting for this backend's start waits no more

    def _work_loop(self) -> None:
        errors = 0  # consecutive unexpected errors in our own code
        while not self._abandoned:
            try:
                if not self._work_once():
                    return
                errors = 0
            except Exception as error:
                errors += 1
                if errors >= _MAX_INTERNAL_ERRORS:
                    raise
                self._recover(error, errors)

    def _work_once(self) -> bool:
        """One step of the worker's loop; ``False`` once the worker is done."""
        if self._state == "starting" and not self._spooling and not self._ensure_started():
            with self._lock:
                self._start_spooling()
        self._wake.clear()
        if self._spooling:
            return self._work_spooled()
        if not self._queue:
            self._wake.wait(_IDLE_WAIT)
            return True
        if self._linger and self._memory < self._hurry_at:
            self._urgent.wait(self._linger)
        self._urgent.clear()
        return self._work_queued()

    def _recover(self, error: Exception, errors: int) -> None:
        """After an unexpected error in the worker: what it held goes to the spool, then it carries on from there."""
        self._record_error("worker", error)
        with self._lock:
            if not self._abandoned:
                self._spool_in_hand()
                self._start_spooling()
            self._in_hand = []
        self._stopping.wait(min(1.0, 0.01 * 2**errors))

    def _died(self, error: BaseException) -> None:
        """The thread is ending on an error: keep every record on disk, answer pending flushes, say so once."""
        self._thread_error = scrub(f"{type(error).__name__}: {error}")
        self._last_error = f"worker thread died: {self._thread_error}"
        _log.error(
            "backend worker thread died; its records go to the spool for `tracelet replay`",
            plugin=self.name,
            error=self._thread_error,
            exc_info=error,
        )
        with self._lock:
            if self._abandoned:
                return
            self._spool_in_hand()
            self._in_hand = []
            self._start_spooling()
            for entry in self._queue:
                request = entry.request if isinstance(entry, _Marker) else entry
                if isinstance(request, FlushRequest):
                    request.complete(self.name, False)

    def _ensure_started(self) -> bool:
        """Start the backend if needed (with retries); ``False`` while it cannot be started."""
        if self._state != "starting":
            return True
        if self._parent is not None:
            self._with_parent(self._parent)
        outcome = self._call("tracelet_backend_start", {"run": self._run_info})
        if outcome is _Outcome.DIVERTED:
            return False
        if outcome is _Outcome.REJECTED:
            self._state = "failed"
            self.started.set()
            return True
        ref = self._result
        self._ref = ref if isinstance(ref, BackendRunRef) else None
        self._state = "running"
        self.started.set()
        with self._lock:
            if not self._abandoned:
                self._guard(self._spool.set_ref, self._ref)
        if self._on_started is not None:
            self._on_started(self.name, self._ref)
        return True

    def _with_parent(self, parent: BackendWorker) -> None:
        """A child run: wait (bounded) for the parent's run in this backend, and hand its ref to the start hook.

        The wait ends when the parent's start hook returned or failed for good,
        after :data:`PARENT_WAIT` seconds, or at ``stop()``'s deadline; records
        logged meanwhile wait in the queue (or the spool) as for any slow start.
        """
        deadline = time.monotonic() + PARENT_WAIT
        while not parent.started.is_set() and not self._abandoned:
            now = time.monotonic()
            end = self._end
            if now >= deadline or (end is not None and now >= end.deadline):
                break
            parent.started.wait(min(0.1, deadline - now))
        info = self._run_info.parent
        if info is not None:
            ref = parent.ref
            if ref is None:
                _log.warning(
                    "the parent run has no run in this backend yet: the child is linked by the tracelet.parent_run_id tag only",
                    plugin=self.name,
                    parent=info.id,
                )
            self._run_info = attrs.evolve(self._run_info, parent=attrs.evolve(info, ref=ref))
            with self._lock:
                if not self._abandoned:
                    self._guard(self._spool.set_run, self._run_info)
        self._parent = None  # resolved once; a retried start uses the same ref

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
                if isinstance(entry, Segment):
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
            route = ROUTES[type(records[start])]
            stop = start + 1
            while stop < len(records) and stop - start < self._max_batch_size and ROUTES[type(records[stop])] is route:
                stop += 1
            outcome, handled = self._deliver(route, records[start:stop])
            with self._lock:
                if self._is_abandoned():
                    return False
                if self._in_hand_file is not None:  # tick() spooled what we hold while we were busy
                    segment_id, ends = self._in_hand_file
                    if handled:
                        self._guard(self._spool.ack, segment_id, ends[handled - 1], handled)
                    self._in_hand = []
                    if outcome is _Outcome.DIVERTED:
                        self._start_spooling()  # the rest is at the spool's head: read it from there, in order
                    return False
                if outcome is _Outcome.DIVERTED:
                    self._in_hand = records[start + handled :]
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
                    marker.request.complete(self.name, False)  # the backend is down: the flush cannot succeed now
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
            damaged = self._spool.damaged[self._damage_seen :]
            if damaged:  # a torn or corrupt region of our own spool (a disk error): its records are lost
                self._damage_seen += len(damaged)
                self._dropped += sum(damage.records or 0 for damage in damaged)
                for damage in damaged:
                    self._record_error("spool", OSError(damage.describe()))
        if not records:
            self._wake.wait(_TICK)
            return True
        _, handled = self._deliver(ROUTES[type(records[0])], records)
        with self._lock:
            if self._is_abandoned():
                return False
            if handled:
                self._guard(self._spool.ack, segment_id, ends[handled - 1], handled)
        return True

    def _give_up(self) -> bool:
        """Leave the backend's records in the spool for ``tracelet replay`` and end this worker."""
        with self._lock:
            if not self._abandoned:
                for entry in self._queue:
                    if isinstance(entry, _Marker) and isinstance(entry.request, FlushRequest):
                        entry.request.complete(self.name, False)
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
            if not ok and self._spooling and not self._abandoned:
                # What precedes it went to the spool on its way (a slow start, a stuck hook): the flush is
                # answered once the spool has been delivered up to here, not failed now.
                with self._lock:
                    self._queue.appendleft(_Marker(request, self._spool.position()))
                return True
            request.complete(self.name, ok and self._flush())
            return True
        if isinstance(request, End):
            if not ok:  # what precedes it is in the spool: end after the spool has been delivered
                with self._lock:
                    self._queue.appendleft(_Marker(request, self._spool.position()))
                return True
            self._finish(request.status)
            return False
        return True

    def _deliver(self, route: tuple[str, str], batch: list[Any]) -> tuple[_Outcome, int]:
        """Deliver one batch; returns the outcome and how many records, from the first, were handled.

        Handled records were delivered or set aside (rejected); with
        ``DIVERTED`` the others belong in the spool.
        """
        if self._state == "failed":
            self._failed += len(batch)
            return _Outcome.DONE, len(batch)
        if not self._ensure_started():
            return _Outcome.DIVERTED, 0
        if self._is_failed():
            self._failed += len(batch)
            return _Outcome.DONE, len(batch)
        hook_name, argument = route
        self._exhausted = False
        outcome = self._call(hook_name, {argument: batch})
        if outcome is _Outcome.DONE:
            self._delivered_batch(batch)
            return outcome, len(batch)
        # A refused batch is always split (the backend answers, and quickly); a failing one not while stopping
        # (replay isolates what is left).
        if len(batch) > 1 and (outcome is _Outcome.REJECTED or (self._exhausted and self._end is None)):
            return self._isolate(hook_name, argument, batch, answered=outcome is _Outcome.REJECTED)
        if outcome is _Outcome.REJECTED:
            self._set_aside(batch)
            return outcome, len(batch)
        return outcome, 0

    def _delivered_batch(self, batch: Sequence[Any]) -> None:
        self._delivered += len(batch)
        self._batches += 1
        timestamp = getattr(batch[0], "timestamp", None)
        if timestamp is not None:
            self._latency = time.time() - timestamp
            self._max_latency = max(self._max_latency or 0.0, self._latency)
            if self._latencies is not None:
                self._latencies.append(self._latency)

    def _set_aside(self, records: Sequence[Any]) -> None:
        """Records the backend refused for good: counted as failed, kept in the spool's rejected part."""
        self._failed += len(records)
        with self._lock:
            if not self._abandoned and not self._guard(self._spool.reject, records):
                self._dropped += len(records)

    def _isolate(self, hook_name: str, argument: str, batch: list[Any], *, answered: bool) -> tuple[_Outcome, int]:
        """Poison isolation: split a batch that keeps failing until the records that fail alone are found.

        Parts are tried once each, in logging order, past the breaker. Once a
        part has gone through (or the backend raised ``PermanentError``, an
        answer too) the backend is healthy, and a record that then fails alone
        is poison: set aside in the spool's rejected part, counted and named
        once, while the rest is delivered in order.

        Before that, a record failing alone may as well mean that the backend
        is down: the batch is diverted to the spool as without isolation, and
        the record remembered. If the same record is the one failing alone
        again after the breaker's cool-down and what follows it goes through,
        it is poison. So a backend recovering in the middle of an isolation
        never has a good record set aside, and order is kept. Returns the
        outcome and the number of records handled (delivered or set aside),
        from the first.
        """
        healthy = answered
        unresolved: list[Any] = []  # the remembered suspect, failed alone again: poison if what follows goes through
        poison: list[Any] = []
        failures = 0
        # Failed calls in a row after which the backend is down rather than the batch bad: enough to split
        # down to the first record.
        budget = len(batch).bit_length() + 2
        pending = deque(_halves(batch))
        while pending and not self._abandoned:
            part = pending[0]
            result = self._probe(hook_name, {argument: part})
            if result == "ok":
                pending.popleft()
                failures = 0
                healthy = True
                self._delivered_batch(part)
                poison[:0] = unresolved
                unresolved.clear()
                continue
            failures += 1
            healthy = healthy or result == "permanent"
            if len(part) > 1:
                if failures >= budget:
                    break  # this part and those after it are diverted
                pending.popleft()
                pending.extendleft(reversed(_halves(part)))
                continue
            if healthy:
                pending.popleft()
                poison.append(part[0])
                failures = 0  # a verdict: the failures that led to it were the poison's
                continue
            key = _suspect_key(part[0])
            if unresolved or key != self._suspect:
                self._suspect = key if not unresolved else self._suspect
                break  # perhaps the backend is down: divert, and look again after the cool-down
            pending.popleft()
            unresolved.append(part[0])
        if healthy:
            poison[:0] = unresolved
            unresolved.clear()
        if poison:
            self._suspect = None
        handled = len(batch) - sum(map(len, pending)) - len(unresolved)
        if poison:
            self._breaker.success()
            self._isolated += len(poison)
            self._set_aside(poison)
            names = sorted({name_label(getattr(record, "name", "")) for record in poison})
            _log.warning(
                "records that the backend refused alone were set aside; the rest of their batch was delivered",
                plugin=self.name,
                records=len(poison),
                names=names[:10],
                spool=str(self._spool.directory / "rejected"),
                error=self._last_error,
            )
        if handled == len(batch):
            return _Outcome.DONE, handled
        return _Outcome.DIVERTED, handled

    def _probe(self, hook_name: str, arguments: dict[str, Any]) -> str:
        """One call, past the breaker and without retry: ``"ok"``, ``"permanent"`` or ``"transient"``."""
        try:
            getattr(self._hooks, hook_name)(**arguments)
        except PermanentError as error:
            self._record_error(hook_name, error)
            return "permanent"
        except (Exception, SystemExit) as error:  # noqa: BLE001 - isolate the backend
            self._record_error(hook_name, error)
            self._retries += 1
            return "transient"
        self._breaker.success()
        return "ok"

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
            except (Exception, SystemExit) as error:  # noqa: BLE001 - isolate the backend (sys.exit() in a hook too)
                self._record_error(hook_name, error)
                self._retries += 1
                attempt += 1
                self._breaker.failure(now)
                if self._breaker.state is BreakerState.OPEN:
                    self._exhausted = True
                    return _Outcome.DIVERTED
                if attempt >= self._policy.retry_attempts:
                    self._exhausted = True
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
        except (Exception, SystemExit) as error:  # noqa: BLE001 - isolate the backend
            self._record_error(hook_name, error)
            return False
        return True

    def _record_error(self, hook_name: str, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        self._last_error = scrub(f"{hook_name}: {message}")  # kept in stats(): no credential from a URL in an error
        if message in self._logged_errors or len(self._logged_errors) >= _MAX_LOGGED_ERRORS:
            return
        self._logged_errors.add(message)
        _log.warning("backend hook failed", plugin=self.name, hook=hook_name, error=message, exc_info=error)
