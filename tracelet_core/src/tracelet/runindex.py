"""The local run index: Tracelet's stable run ids and, for each, every backend's own run.

A run started with ``run_id="..."`` (or ``TRACELET_RUN_ID``) has an entry
``<spool_dir>/.runs/<run id>.json``::

    {"format": "tracelet-run-index", "version": 1, "run_id": "...", "project": "...", "name": "...",
     "created": 1700000000.0, "updated": 1700000100.0,
     "backends": {"mlflow": {"id": "<MLflow run id>", "url": null}, ...}}

A restarted job that passes the same id reads it and hands each backend its
run id (``RunInfo.resume``), so the backend attaches to the run it created
before instead of making a new one. Every write goes to a temporary file that
is fsynced, renamed over the entry and followed by an fsync of the directory:
after a crash the entry is the old one or the new one, never a torn one.

``<run id>.lock`` is held (``flock``) by the process whose run uses the id,
for as long as the run lives: a second process starting the same id while
the first runs gets a :class:`~tracelet.errors.ConfigError` instead of two
processes writing the same backend run. The kernel releases the lock when its
process dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from tracelet.errors import ConfigError
from tracelet.info import BackendRunRef, RunInfo
from tracelet.log import get_logger
from tracelet.redact import scrub

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["INDEX_DIR", "RunIndex", "check_run_id", "read_entry", "record_ref", "write_durable"]

_log = get_logger()

INDEX_DIR = ".runs"
"""The index's directory under ``spool_dir``; a dot name, so that it is never a run's spool directory."""
_FORMAT = "tracelet-run-index"
_VERSION = 1
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """``run_id`` if it can name a run (and its directories); :class:`ConfigError` otherwise."""
    if not _RUN_ID.fullmatch(run_id):
        raise ConfigError(f"run_id {run_id!r}: use 1 to 128 letters, digits, '.', '_' and '-', starting with a letter or digit")
    return run_id


def write_durable(path: Path, document: object) -> None:
    """Replace ``path`` with ``document`` as JSON, atomically and durably (temporary file, fsync, rename, fsync)."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(document, file, indent=1, sort_keys=True)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    with contextlib.suppress(OSError):  # a directory fsync is not possible everywhere
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _entry_path(root: Path, run_id: str) -> Path:
    return root / INDEX_DIR / f"{run_id}.json"


def read_entry(root: Path, run_id: str) -> dict[str, Any] | None:
    """The index entry of ``run_id`` under the spool directory ``root``; ``None`` when the id is unknown.

    Raises :class:`ConfigError` naming the file when it exists but cannot be read.
    """
    path = _entry_path(root, run_id)
    try:
        entry = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ConfigError(f"the run index entry {path} is unreadable: {type(error).__name__}: {error}") from error
    if not isinstance(entry, dict) or entry.get("format") != _FORMAT or not isinstance(entry.get("backends"), dict):
        raise ConfigError(f"the run index entry {path} is not a tracelet run index entry")
    return entry


def _refs(entry: dict[str, Any]) -> dict[str, BackendRunRef]:
    return {
        name: BackendRunRef(str(ref["id"]), ref.get("url"))
        for name, ref in entry["backends"].items()
        if isinstance(ref, dict) and ref.get("id")
    }


def record_ref(root: Path, run_id: str, backend: str, ref: BackendRunRef) -> None:
    """Record ``backend``'s run in an existing index entry (``tracelet sync``); nothing when the id is not indexed."""
    entry = read_entry(root, run_id)
    if entry is not None:
        entry["backends"][backend] = {"id": ref.id, "url": None if ref.url is None else scrub(ref.url)}
        entry["updated"] = time.time()
        write_durable(_entry_path(root, run_id), entry)


class RunIndex:
    """The index entry of one run id, claimed by the process whose run uses it (see the module docstring)."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.root = root
        self.run_id = run_id
        self.path = _entry_path(root, run_id)
        self._lock_file: BinaryIO | None = None
        self._mutex = threading.Lock()  # backend workers record their runs from their own threads
        self._entry: dict[str, Any] | None = None

    @classmethod
    def claim(cls, root: Path, run_id: str) -> RunIndex:
        """Take the run id for this process and read its entry; :class:`ConfigError` when another process has it."""
        index = cls(root, check_run_id(run_id))
        index.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = index.path.with_suffix(".lock")
        lock_file = lock_path.open("ab")
        if fcntl is not None:
            try:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock_file.close()
                raise ConfigError(
                    f"run_id {run_id!r} is in use by another running process (it holds {lock_path}); "
                    "one process at a time can log to a run"
                ) from None
        index._lock_file = lock_file
        try:
            index._entry = read_entry(root, run_id)
        except ConfigError:
            index.release()
            raise
        return index

    @property
    def known(self) -> bool:
        """Whether the id had an entry when it was claimed: an earlier process started this run."""
        return self._entry is not None

    @property
    def name(self) -> str | None:
        """The run name the entry records."""
        return None if self._entry is None else self._entry.get("name")

    def refs(self) -> dict[str, BackendRunRef]:
        """Each backend's own run, as recorded."""
        return {} if self._entry is None else _refs(self._entry)

    def save(self, run: RunInfo) -> None:
        """Write the entry of ``run`` (created now if the id is new), keeping the backend runs recorded."""
        now = time.time()
        with self._mutex:
            entry = self._entry or {"format": _FORMAT, "version": _VERSION, "created": now, "backends": {}}
            entry.update(run_id=run.id, project=run.project, name=run.name, updated=now)
            self._entry = entry
            write_durable(self.path, entry)

    def record(self, backend: str, ref: BackendRunRef | None) -> None:
        """Record the run ``backend`` created or attached to (called on its worker's thread once it started)."""
        if ref is None:
            return
        with self._mutex:
            if self._entry is None or self._lock_file is None:
                return
            url = None if ref.url is None else scrub(ref.url)
            if self._entry["backends"].get(backend) == {"id": ref.id, "url": url}:
                return
            self._entry["backends"][backend] = {"id": ref.id, "url": url}
            self._entry["updated"] = time.time()
            try:
                write_durable(self.path, self._entry)
            except OSError as error:
                _log.warning(
                    "the run index could not be written; a restart may not resume this backend's run",
                    path=str(self.path),
                    backend=backend,
                    error=f"{type(error).__name__}: {error}",
                )

    def release(self) -> None:
        """Give the run id up (the run ended)."""
        with self._mutex:
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
