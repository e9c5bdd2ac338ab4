"""The router: the intake the training loop appends to, and the thread that hands records to every backend.

::

    caller threads --append--> intake --router thread--> queue --worker thread--> backend A hooks
                                                     \\-> queue --worker thread--> backend B hooks

The caller's thread only appends an immutable item to the intake deque
(``deque.append`` is atomic; no lock is taken). The router thread turns the
hot path's plain metric tuples into :class:`~tracelet.records.Metric` records,
checks every record at the door (:mod:`tracelet.checks`), masks secrets
(:mod:`tracelet.redact`) and hands every item to each backend's
:class:`~tracelet.worker.BackendWorker`.

Flush and end requests travel through the same queues as records, so they
are handled after every record logged before them.

Nothing a record holds and no internal error ends the router: a record that
cannot be checked is refused and counted, an error in the loop is logged and
routing goes on. If the thread dies anyway, that is logged and shown in
``stats()``, and the threads that need it (a logging call finding the intake
full, ``flush()``, ``stop()``) route what is in the intake themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from tracelet.checks import STEP_RANGE, RecordChecker
from tracelet.lifecycle import block_process_signals
from tracelet.log import get_logger
from tracelet.records import ROUTES, Metric, RunStatus
from tracelet.redact import Redactor, scrub
from tracelet.values import Tally, name_label, short_repr
from tracelet.worker import BackendStats, BackendWorker, End, FlushRequest, Segment

__all__ = ["BackendStats", "BackendWorker", "Dispatcher"]

_log = get_logger()

_METRIC_ROUTE = ROUTES[Metric]
_MAX_DRAIN = 10_000  # items the router takes from the intake before handing them on
_SEGMENT_SIZE = 1_000  # records per segment: the unit the router hands on and spools
_TICK = 0.25  # seconds between the router's checks for stuck backends and spool syncs
_MAX_ROUTER_ERRORS = 5  # consecutive unexpected errors in the router's loop before the thread gives up
_STALL_ALLOWANCE = 100_000  # items kept beyond queue_size while the router is stalled, before any is dropped
_SLOW_STOP_NOTICE = 1.0  # seconds stop() waits for backends before saying that it is waiting


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
        self._checker = RecordChecker(self.tally)
        self.redacted = 0
        """Records whose secrets the router masked."""
        # No maxlen: a full deque(maxlen=...) silently discards its oldest item when two threads append at
        # once. The bound is kept by the callers instead (see make_room), who may overshoot it by one item
        # per logging thread.
        self.intake: deque[object] = deque()
        self.intake_size = intake_size
        """The intake's bound: a logging call that finds this many items waits for the router (make_room)."""
        self.intake_dropped = 0
        """Items a logging call dropped because the intake stayed full (under ``_drop_lock``)."""
        self._drop_lock = threading.Lock()
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
        self._ended = False  # the end request was handed to every worker
        self.thread_error: str | None = None
        """Set when the router thread died (an internal error); see the module docstring."""
        self._rescue_lock = threading.Lock()  # routing by other threads once the router is gone
        self._logged_errors: set[str] = set()
        self._thread = threading.Thread(target=self._route, name="tracelet-router", daemon=True)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()
        self._thread.start()

    def submit(self, item: object) -> None:
        """Queue one record or request (any thread)."""
        intake = self.intake
        size = len(intake)
        if size >= self.intake_size:
            size = self.make_room()
            if size < 0:
                return
        intake.append(item)
        if size == 0:
            self.wake()
        elif size == self.hurry_at:
            self.hurry()

    def make_room(self) -> int:
        """The intake is full: wait up to ``full_wait`` seconds for the router to drain it.

        Returns the intake's length, or ``-1`` when the caller's item must be
        dropped (counted exactly, from any number of threads). Called on the
        logging thread, only when a loop logs faster than the router can route
        (over a million records a second, or a spool on a disk slower than
        that). Waiting there for a few milliseconds is what keeps every
        record; if the router has not drained within ``full_wait`` (it is
        stalled, e.g. by a disk that takes seconds to sync), later calls stop
        waiting and keep appending, up to ``_STALL_ALLOWANCE`` items beyond
        the bound (a few tens of MB); only beyond that is an item dropped and
        counted. If the router thread is gone,
        the caller routes the intake itself.
        """
        if not self._thread.is_alive() and self.thread_error is not None:
            self._rescue()
            return len(self.intake)
        if self._full_wait and not self._stalled and threading.current_thread() is not self._thread:
            self._room.clear()
            self._urgent.set()
            self._wake_event.set()
            if self._room.wait(self._full_wait):
                # The router drained since: append, even if other threads refilled the intake meanwhile (the
                # bound is then exceeded by at most one item per logging thread).
                return len(self.intake)
            self._stalled = True
        size = len(self.intake)
        if size >= self.intake_size + _STALL_ALLOWANCE:
            with self._drop_lock:
                self.intake_dropped += 1
            return -1
        return size  # the router is slow to drain (a disk that takes seconds to sync): keep the record, up to a bound

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything submitted before the call was delivered; ``False`` on timeout or loss."""
        request = FlushRequest(worker.name for worker in self.workers)
        self.submit(request)
        self._urgent.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _TICK if deadline is None else min(_TICK, deadline - time.monotonic())
            if request.done.wait(max(0.0, wait)):
                return request.ok
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if self.thread_error is not None:
                self._rescue()  # the router is gone: the request is still in the intake
            for worker in self.workers:
                if not worker.alive():
                    request.complete(worker.name, False)  # a dead (or finished) worker answers nothing more

    def stop(self, status: RunStatus, deadline: float) -> bool:
        """Deliver what is queued, end every backend with ``status``, return by ``deadline``.

        Returns ``True`` when every backend ended in time. A backend still
        busy at the deadline is abandoned (its thread is a daemon) and its
        undelivered records are written to its spool. Records another thread
        appends while this runs (a race with ``stop()``) are counted as dropped.
        """
        self._deadline = deadline
        self._closing = status
        self._urgent.set()
        self.wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive() and not self._ended:
            self._rescue()  # the router died: route what it left, then end the backends ourselves
            self._end_workers()
        self._wait_notice(deadline)
        ended = [worker.join(deadline) for worker in self.workers]
        late = len(self.intake)
        if late:
            self.intake.clear()
            for worker in self.workers:
                worker.add_lost(late)
            _log.warning("records logged on another thread while stop() ended the run were dropped", records=late)
        return not self._thread.is_alive() and all(ended)

    def _wait_notice(self, deadline: float) -> None:
        """Say once, when stop() starts waiting on a slow or hung backend, how long it may wait and for whom."""
        soon = min(deadline, time.monotonic() + _SLOW_STOP_NOTICE)
        for worker in self.workers:
            worker.wait_until(soon)
        slow = [worker.name for worker in self.workers if worker.alive()]
        remaining = deadline - time.monotonic()
        if slow and remaining > 0:
            _log.warning(
                "waiting for backends to deliver what is queued before the run ends (stop_timeout)",
                backends=slow,
                at_most_seconds=round(remaining, 1),
            )

    # --- the router thread -----------------------------------------------------------------

    def _route(self) -> None:
        block_process_signals()
        errors = 0
        while True:
            try:
                self._route_loop()
                break
            except BaseException as error:  # noqa: BLE001 - routing must go on; a bug is logged, not fatal
                errors += 1
                self._record_error(error)
                if errors >= _MAX_ROUTER_ERRORS:
                    self.thread_error = scrub(f"{type(error).__name__}: {error}")
                    _log.error(
                        "the router thread died; logging calls, flush() and stop() route records themselves",
                        error=self.thread_error,
                        exc_info=error,
                    )
                    return
                time.sleep(0.01 * 2**errors)
        self._end_workers()

    def _route_loop(self) -> None:
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
            # Read before draining: a record appended before stop() set _closing is then always drained.
            closing = self._closing is not None
            entries, records = self._drain()
            if entries:
                self._stalled = False
                self._room.set()  # a logging thread may be waiting for room in the intake
            self._hand_over(entries, records)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + _TICK
                for worker in self.workers:
                    self._guarded(worker.tick, now)
            idle = not entries
            if entries:
                continue
            if closing:
                return
            self._wake_event.wait(_TICK)

    def _hand_over(self, entries: list[object], records: int) -> None:
        """Give drained entries, and the count of items dropped at the intake, to every worker."""
        lost = self.intake_dropped - self._routed_drops
        if lost:
            self._routed_drops += lost
            for worker in self.workers:
                worker.add_lost(lost)
        if entries:
            for worker in self.workers:
                self._guarded(worker.put, entries, records)

    def _end_workers(self) -> None:
        if self._ended:
            return
        self._ended = True
        end = [End(self._closing or RunStatus.FINISHED, self._deadline)]
        for worker in self.workers:
            self._guarded(worker.put, end, 0)

    def _rescue(self) -> None:
        """Route what is in the intake on the calling thread: the router thread is gone."""
        with self._rescue_lock:
            while True:
                entries, records = self._drain()
                self._hand_over(entries, records)
                if not entries:
                    return

    def _guarded(self, action: Callable[..., object], *arguments: Any) -> None:
        try:
            action(*arguments)
        except Exception as error:  # noqa: BLE001 - one worker's trouble must not stop the routing to the others
            self._record_error(error)

    def _record_error(self, error: BaseException) -> None:
        message = f"{type(error).__name__}: {error}"
        if message not in self._logged_errors and len(self._logged_errors) < 20:
            self._logged_errors.add(message)
            _log.error("internal error in the router; routing goes on", error=message, exc_info=error)

    def _drain(self) -> tuple[list[object], int]:
        """Take up to ``_MAX_DRAIN`` items: runs of one route become segments, requests stay apart.

        Every record is checked here (see :mod:`tracelet.checks`); one that is
        refused, or whose check fails in any way, is counted and left out.
        """
        take = self.intake.popleft
        new_metric = tuple.__new__
        known = self._checker.known_names
        low, high = STEP_RANGE
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
            try:
                if type(item) is tuple:  # the hot path's metric: its value is a float and its step an int
                    name = item[0]
                    if type(name) is not str or name not in known:  # checked here, not on the caller's thread
                        checked = self._checker.metric_name(name)
                        if checked is None:
                            continue
                        if checked is not name:
                            item = (checked, *item[1:])
                    if not low <= item[2] <= high:
                        self.tally.reject("step", item[0], f"step {short_repr(item[2])} is outside int64")
                        continue
                    item, item_route = new_metric(Metric, item), _METRIC_ROUTE
                else:
                    item_route = ROUTES.get(type(item))
                    if item_route is None:  # a flush request
                        entries.append(item)
                        route = None
                        continue
                    item = self._checked(item)
                    if item is None:
                        continue
            except Exception as error:  # noqa: BLE001 - a hostile object in a record refuses the record
                self.tally.reject("record", name_label(type(item).__name__), f"{type(error).__name__}: {short_repr(error)}")
                continue
            if item_route is not route or len(segment) >= _SEGMENT_SIZE:
                segment, route = [], item_route
                entries.append(Segment(item_route, segment, now))
            segment.append(item)
            records += 1
        return entries, records

    def _checked(self, record: Any) -> Any:
        """A record object (from the logging API, ``log_record``, a collector): checked, secrets masked.

        Runs on the router thread, the one point every record passes before
        any backend queue, the spool or a plugin sees it.
        """
        record = self._checker.check(record)
        if record is None or self._redactor is None:
            return record
        masked = self._redactor.record(record)
        if masked is not record:
            self.redacted += 1
        return masked
