"""Offline runs: record to the spool now, deliver to any backend later (``tracelet sync``).

With ``mode="offline"`` no backend plugin is created (no backend library is
imported, nothing is contacted). The run's one worker is an
:class:`OfflineWorker`: the router writes every record to the run's
backend-neutral spool ``<spool_dir>/<run id>/@offline/`` as it routes it, in
the spool format every run uses when a backend is down. ``meta.json`` names
the run (``RunInfo``; its ``backends`` are the backends the configuration
selected, which ``tracelet sync`` delivers to unless told others).

``tracelet sync`` hands an offline spool to a backend by *materialising* it:
the segments not yet given to that backend are hard-linked (copied where
links are not possible) into a backend spool ``<run>/<backend>@sync/``, which
``tracelet replay``'s machinery then delivers and deletes, attaching to the
same backend run each time (the first time: to the run the run index names
for that backend, if the run id has one, else a new run). ``@offline/synced.json`` records, per backend,
the segments given to it and its run::

    {"mlflow": {"segments": [1000000000000000, ...], "backend_run": {"id": "...", "url": null}}}

The offline spool itself is never changed by a sync, so the same run can be
synced to MLflow today and to W&B tomorrow; each backend gets each segment
once. Crash safety: a copy is built in a temporary directory and renamed into
place, then its segments are added to ``synced.json`` before anything is
delivered; a sync that finds ``<run>/<backend>@sync/`` (an interrupted sync)
adds its segments again and delivers it first, so a segment is never handed
over twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pluggy

from tracelet.info import BackendRunRef, RunInfo
from tracelet.records import RunStatus
from tracelet.runindex import write_durable
from tracelet.spool import BackendSpool, converter, read_meta
from tracelet.worker import BackendWorker, End, FlushRequest, Segment

__all__ = ["OFFLINE_WORKER", "SYNC_SUFFIX", "OfflineWorker", "backend_of", "materialise", "read_offline", "record_synced"]

OFFLINE_WORKER = "offline"
"""The name of an offline run's one worker: ``run.stats()["offline"]``."""
SYNC_SUFFIX = "@sync"
"""A sync's copy of an offline spool for a backend is ``<run>/<backend>@sync/`` (apart from an online run's spool)."""
_SYNCED = "synced.json"


def backend_of(directory: Path) -> str:
    """The backend a spool directory delivers to: its name, without a sync copy's suffix."""
    return directory.name.removesuffix(SYNC_SUFFIX)


class OfflineWorker(BackendWorker):
    """An offline run's only worker: the router writes each record to the offline spool; nothing is delivered.

    No thread: ``put()`` appends on the router thread (unbuffered writes, so a
    record is in the page cache, safe from a killed process, once the router
    handled it; fsynced every ``spool_fsync_interval`` and at each flush). A
    flush is answered once what precedes it is written and fsynced; the end
    closes the spool with the run's status. ``stats()["offline"].spooled``
    counts the records written.
    """

    def __init__(self, run_info: RunInfo, spool: BackendSpool) -> None:
        super().__init__(OFFLINE_WORKER, pluggy.HookRelay(), run_info, max_batch_size=1, queue_size=1, linger=0.0, spool=spool)
        self._spooling = True
        self._state = "running"
        self._dropped_at_flush = 0

    def start(self) -> None:
        """Nothing to start: the router does the writing."""

    def put(self, entries: Sequence[object], records: int) -> None:
        with self._lock:
            for entry in entries:
                if isinstance(entry, Segment):
                    self._spill([entry])
                elif isinstance(entry, FlushRequest):
                    synced = self._guard(self._spool.sync)
                    lost = self._dropped + self._lost_upstream
                    entry.complete(self.name, bool(synced) and lost == self._dropped_at_flush)
                    self._dropped_at_flush = lost
                elif isinstance(entry, End) and self._state != "ended":
                    self._end = entry
                    self._guard(self._spool.close, entry.status)
                    self._state = "ended"

    def tick(self, now: float) -> None:
        with self._lock:
            if self._state != "ended":
                self._guard(self._spool.maybe_sync)

    def join(self, deadline: float) -> bool:
        return True

    def alive(self) -> bool:
        return self._state != "ended"

    def wait_until(self, deadline: float) -> None:
        """Nothing to wait for: the end request closed the spool on the router thread."""


def read_offline(directory: Path) -> tuple[RunInfo, RunStatus | None]:
    """The run of an offline spool and its final status (``None``: it did not stop, e.g. SIGKILL); ``ValueError``."""
    meta = read_meta(directory)
    try:
        run = converter.structure(meta["run"], RunInfo)
        status = RunStatus(meta["status"]) if meta.get("status") else None
    except Exception as error:  # whatever is wrong in it, it is unreadable
        raise ValueError(f"meta.json: {type(error).__name__}: {error}") from error
    return run, status


def _read_synced(directory: Path) -> dict[str, Any]:
    try:
        document = json.loads((directory / _SYNCED).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(document, dict):
        raise ValueError(f"{_SYNCED} is not a JSON object")
    return document


def _segment_ids(directory: Path) -> set[int]:
    return {int(path.stem) for path in directory.glob("*.seg") if path.stem.isdigit()}


def materialise(directory: Path, backend: str) -> Path | None:
    """The backend spool holding what ``backend`` has not had of the offline spool ``directory``; ``None``: nothing.

    An interrupted sync's copy is returned as it is; otherwise the segments
    not yet given are handed over as ``<run>/<backend>@sync/``. The caller
    holds the offline spool's lock and delivers the copy (``replay``).
    Raises ``ValueError`` for an unreadable offline spool and ``OSError`` when
    the copy cannot be written (nothing is marked then).
    """
    run, status = read_offline(directory)
    synced = _read_synced(directory)
    target = directory.parent / f"{backend}{SYNC_SUFFIX}"
    state = synced.setdefault(backend, {"segments": [], "backend_run": None})
    given = set(state["segments"])
    if target.is_dir():  # an interrupted sync: its copy is handed over already, whatever synced.json says
        given |= _segment_ids(target)
    else:
        source = BackendSpool.open_existing(directory, run, OFFLINE_WORKER)
        new = [path for path in source.segment_paths() if int(path.stem) not in given]
        if not new:
            return None
        ref = state.get("backend_run") or _indexed_ref(directory.parent.parent, run.id, backend)
        # Built inside @offline/, two levels down: a half-built copy is never taken for a spool by find_spools().
        _copy(new, directory / f".copy-{backend}", target, run, backend, ref, status)
        given |= {int(path.stem) for path in new}
    if sorted(given) != state["segments"]:
        state["segments"] = sorted(given)
        write_durable(directory / _SYNCED, synced)
    return target


def _indexed_ref(root: Path, run_id: str, backend: str) -> dict[str, Any] | None:
    """The backend run the run index names for a run id that has an entry (a run that was online too)."""
    from tracelet.errors import ConfigError
    from tracelet.runindex import read_entry

    try:
        entry = read_entry(root, run_id)
    except ConfigError:
        return None
    ref = None if entry is None else entry["backends"].get(backend)
    return ref if isinstance(ref, dict) and ref.get("id") else None


def _copy(
    segments: list[Path],
    temporary: Path,
    target: Path,
    run: RunInfo,
    backend: str,
    ref: dict[str, Any] | None,
    status: RunStatus | None,
) -> None:
    """Build the backend spool in ``temporary``, then rename it to ``target`` (a crash leaves no half copy)."""
    if temporary.exists():
        shutil.rmtree(temporary)  # a copy interrupted before its rename: never handed over
    spool = BackendSpool(temporary, run, backend, fsync_interval=0.0)
    if ref is not None:
        spool._ref = converter.structure(ref, BackendRunRef)
    spool._status = status
    spool._ensure_directory()  # lock and meta.json, naming the backend run to attach to
    spool.release()
    for path in segments:
        try:
            os.link(path, temporary / path.name)  # segments never change once their writer closed them
        except OSError:
            shutil.copy2(path, temporary / path.name)
    with contextlib.suppress(OSError):
        descriptor = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    os.replace(temporary, target)


def record_synced(directory: Path, backend: str, ref: BackendRunRef | None) -> None:
    """Remember the run ``backend`` delivered an offline run to: the next sync attaches to it."""
    if ref is None:
        return
    synced = _read_synced(directory)
    state = synced.setdefault(backend, {"segments": [], "backend_run": None})
    document = converter.unstructure(ref)
    if state.get("backend_run") != document:
        state["backend_run"] = document
        write_durable(directory / _SYNCED, synced)
