"""Running collector plugins: each on a thread of its own, so a slow probe never blocks training."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import pluggy

from tracelet.info import RunInfo
from tracelet.lifecycle import block_process_signals
from tracelet.log import get_logger
from tracelet.records import is_record

__all__ = ["CollectorThread"]

_log = get_logger()


class CollectorThread:
    """Calls one collector's hooks: start records once, then a sample every interval."""

    def __init__(self, name: str, hooks: pluggy.HookRelay, run_info: RunInfo, submit: Callable[[object], None]) -> None:
        self.name = name
        self._hooks = hooks
        self._run_info = run_info
        self._submit = submit
        self._stopping = threading.Event()
        self._logged_errors: set[str] = set()
        self._warned_single = False
        self._thread = threading.Thread(target=self._work, name=f"tracelet-collector-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, deadline: float) -> bool:
        """Ask the collector to stop and wait until ``deadline``; ``True`` if it did."""
        self._stopping.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def _work(self) -> None:
        block_process_signals()
        self._emit(self._call("tracelet_collect_start", run=self._run_info))
        interval = self._call("tracelet_collect_interval")
        if isinstance(interval, int | float) and interval > 0:
            while not self._stopping.is_set():
                self._emit(self._call("tracelet_collect_sample"))
                self._stopping.wait(interval)
        self._call("tracelet_collect_stop")

    def _call(self, hook_name: str, **arguments: object) -> object:
        try:
            return getattr(self._hooks, hook_name)(**arguments)
        except Exception as error:  # noqa: BLE001 - a collector's failure must not escape its thread
            message = f"{type(error).__name__}: {error}"
            if message not in self._logged_errors:
                self._logged_errors.add(message)
                _log.warning("collector hook failed", plugin=self.name, hook=hook_name, error=message, exc_info=error)
            return None

    def _emit(self, records: object) -> None:
        if records is None:
            return
        if is_record(records):
            # A Metric is a named tuple: iterating it would hand core its four fields as "records".
            if not self._warned_single:
                self._warned_single = True
                kind = type(records).__name__
                _log.warning(f"collector returned a single {kind}; return a list", plugin=self.name, value=repr(records))
            self._submit(records)
            return
        if not isinstance(records, Iterable):
            _log.warning("collector returned a non-iterable; ignored", plugin=self.name, value=repr(records))
            return
        for record in records:
            if is_record(record):
                self._submit(record)
            else:
                _log.warning("collector returned something that is not a record; ignored", plugin=self.name, value=repr(record))
