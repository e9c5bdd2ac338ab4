"""The durable spool: records a backend could not take yet, on local disk, in logging order.

Layout, per run and backend (``<spool_dir>/<run id>/<backend>/``)::

    meta.json             format, version, the run (RunInfo), the backend's run ref, final status
    lock                  held (flock) by the process that writes the spool, and by ``tracelet replay``
    acked.json            {segment id: byte offset delivered up to}, for partly delivered segments
    00000001000000000000.seg ...   append-only segment files, read in ascending id order
    rejected/             the same layout, for records the backend refused

An offline run (``mode="offline"``) writes one backend-neutral spool,
``<spool_dir>/<run id>/@offline/``, of the same format; ``tracelet sync``
delivers it (see :mod:`tracelet.offline`). :func:`find_spools` leaves it out:
it is no backend's.

A segment file is ``MAGIC`` followed by frames ``<u32 length><u32 crc32(payload)><payload>``
(little endian). A torn write at a crash leaves a short or corrupt last frame: the
reader stops there, so at most that record is lost and it is never misread. The
payload is one record (see :func:`encode_record`); the format is documented in
``docs/reliability.md`` and versioned by ``MAGIC``.

Three rules keep what is on disk exactly what the spool counts, through
crashes and full disks:

- a segment id is never used twice in a directory (tail ids count up, head
  ids down, and a drained spool goes on from where it was), so an entry of
  ``acked.json`` can only ever describe the segment it was written for;
- ``acked.json`` is rewritten whenever a segment is deleted, and removed when
  nothing is partly delivered;
- a write that fails (a full disk) leaves nothing of itself: the segment is
  cut back to its last good frame and closed, and the next write starts a new
  one, so records written once space came back never sit behind a torn frame.

Thread safety: a :class:`BackendSpool` is not thread-safe; its owner (the
backend's worker) serialises every call with one lock shared by the router,
the worker and ``stop()``. The training loop's thread never calls it.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import queue
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import attrs
import cattrs

from tracelet.info import BackendRunRef, RunInfo
from tracelet.lifecycle import block_process_signals
from tracelet.log import get_logger
from tracelet.records import ROUTES, Artifact, Figure, Histogram, Image, Metric, Param, Record, RunStatus, Tag, Text
from tracelet.redact import scrub

try:  # POSIX: a lock that the kernel releases when the process dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process spool lock
    fcntl = None  # type: ignore[assignment]

_HAS_FLOCK: bool = fcntl is not None

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "OFFLINE_DIR",
    "BackendSpool",
    "Damage",
    "SpoolPosition",
    "decode_record",
    "encode_record",
    "encode_records",
    "find_offline_spools",
    "find_spools",
    "read_meta",
]

_log = get_logger()

_write = os.write
"""How the spool writes bytes to a file: one place, so that a test can fake a full disk where none can be made."""

FORMAT_VERSION = 1
OFFLINE_DIR = "@offline"
"""The directory of an offline run's backend-neutral spool, next to the backends' (not a plugin name)."""
MAGIC = b"TLSPOOL" + bytes([FORMAT_VERSION])
_FRAME = struct.Struct("<II")
_METRIC = struct.Struct("<dqd")
_METRIC_PAYLOAD = struct.Struct("<cdqd")  # b"M" + _METRIC, packed in one call
_MAX_FRAME = 1 << 30  # a length above this is corruption, not a record
_FIRST_ID = 10**15  # prepended segments count down from here, appended ones up
_SEGMENT_BYTES = 16 << 20  # the tail segment is closed and a new one started beyond this size
_I64 = (-(2**63), 2**63 - 1)

SpoolPosition = tuple[int, int]
"""(segment id, byte offset): a point in the spool's order."""

# --- record codec ------------------------------------------------------------------

_TYPES: dict[str, type] = {
    "param": Param,
    "tag": Tag,
    "artifact": Artifact,
    "image": Image,
    "text": Text,
    "histogram": Histogram,
    "figure": Figure,
    "metric": Metric,
}
_TYPE_NAMES = {kind: name for name, kind in _TYPES.items()}


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(bytes, lambda value: base64.b64encode(value).decode("ascii"))
    converter.register_structure_hook(bytes, lambda value, _: base64.b64decode(value))
    converter.register_unstructure_hook(
        Metric, lambda m: {"name": m.name, "value": m.value, "step": m.step, "timestamp": m.timestamp}
    )
    converter.register_structure_hook(
        Metric, lambda d, _: Metric(d["name"], float(d["value"]), int(d["step"]), float(d["timestamp"]))
    )
    # A param value is already one of str/int/float/bool/None: keep it as it is.
    converter.register_structure_hook(Param, lambda d, _: Param(d["name"], d["value"]))
    return converter


_CONVERTER = _converter()
converter = _CONVERTER
"""The cattrs converter of the spool format (also used for ``meta.json``)."""


def encode_record(record: Record) -> bytes:
    """One record as a frame payload.

    ``M`` + ``<dqd`` (value, step, timestamp) + UTF-8 name for a metric whose
    step fits 64 bits (the hot case, a fixed layout); otherwise ``J`` + the
    JSON of the cattrs-unstructured record with a ``"type"`` key.
    """
    if type(record) is Metric:
        name, value, step, timestamp = record
        if _I64[0] <= step <= _I64[1]:
            return b"M" + _METRIC.pack(value, step, timestamp) + name.encode("utf-8", "surrogatepass")
    document = _CONVERTER.unstructure(record)
    document["type"] = _TYPE_NAMES[type(record)]
    return b"J" + json.dumps(document, ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_record(payload: bytes) -> Record:
    """The inverse of :func:`encode_record`; raises ``ValueError`` for an unknown payload."""
    kind = payload[:1]
    if kind == b"M":
        value, step, timestamp = _METRIC.unpack_from(payload, 1)
        return Metric(payload[1 + _METRIC.size :].decode("utf-8", "surrogatepass"), value, step, timestamp)
    if kind == b"J":
        document = json.loads(payload[1:].decode("utf-8", "surrogatepass"))
        record_type = _TYPES[document.pop("type")]
        record: Record = _CONVERTER.structure(document, record_type)
        return record
    raise ValueError(f"unknown spool record kind {kind!r}")


def encode_records(records: Iterable[Record]) -> tuple[bytes, list[int]]:
    """Frames for ``records``, and the end offset of each frame relative to the start."""
    # The router spools up to a million metrics a second when a backend is down: encode_record() is
    # inlined for metrics, and each name is encoded once per call.
    parts: list[bytes] = []
    ends: list[int] = []
    size = 0
    add = parts.append
    end = ends.append
    pack = _FRAME.pack
    header = _FRAME.size
    crc = zlib.crc32
    metric = _METRIC_PAYLOAD.pack
    lowest, highest = _I64
    names: dict[str, bytes] = {}
    for record in records:
        if type(record) is Metric and lowest <= record[2] <= highest:
            name = record[0]
            encoded = names.get(name)
            if encoded is None:
                encoded = names[name] = name.encode("utf-8", "surrogatepass")
            payload = metric(b"M", record[1], record[2], record[3]) + encoded
        else:
            payload = encode_record(record)
        add(pack(len(payload), crc(payload)))
        add(payload)
        size += header + len(payload)
        end(size)
    return b"".join(parts), ends


def iter_frames(file: BinaryIO, offset: int, limit: int) -> Iterator[tuple[bytes, int]]:
    """Yield ``(payload, end offset)`` from ``offset`` up to ``limit``; stop at a torn or corrupt frame."""
    file.seek(offset)
    while offset + _FRAME.size <= limit:
        header = file.read(_FRAME.size)
        if len(header) < _FRAME.size:
            return
        length, checksum = _FRAME.unpack(header)
        if length > _MAX_FRAME or offset + _FRAME.size + length > limit:
            return
        payload = file.read(length)
        if len(payload) < length or zlib.crc32(payload) != checksum:
            return
        offset += _FRAME.size + length
        yield payload, offset


# --- metadata -------------------------------------------------------------------------


def read_meta(directory: Path) -> dict[str, Any]:
    """``meta.json`` of a backend's spool directory.

    Raises ``ValueError`` saying what is wrong (without the directory) when it
    cannot be read, is not a spool's, or is of another format version.
    """
    try:
        meta = json.loads((directory / "meta.json").read_text("utf-8"))
    except (OSError, ValueError) as error:  # a decoding error is a ValueError too
        raise ValueError(f"meta.json is unreadable: {type(error).__name__}: {error}") from error
    if not isinstance(meta, dict) or meta.get("format") != "tracelet-spool":
        raise ValueError("meta.json: not the metadata of a tracelet spool")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"meta.json: spool format version {meta.get('version')!r}; this tracelet-core reads version {FORMAT_VERSION}"
        )
    return meta


def _age(path: Path) -> tuple[float, str]:
    try:
        return (path.stat().st_mtime, str(path))
    except OSError:  # deleted meanwhile (a replay in another process finished it)
        return (0.0, str(path))


def find_spools(root: Path) -> list[Path]:
    """Every backend spool directory under ``root`` (``<root>/<run>/<backend>``), oldest run first.

    Offline runs' spools (``<root>/<run>/@offline``) are not a backend's: see :func:`find_offline_spools`.
    """
    if not root.is_dir():
        return []
    return sorted((meta.parent for meta in root.glob("*/*/meta.json") if meta.parent.name != OFFLINE_DIR), key=_age)


def find_offline_spools(root: Path) -> list[Path]:
    """Every offline run's spool directory under ``root`` (``<root>/<run>/@offline``), oldest run first."""
    if not root.is_dir():
        return []
    return sorted((meta.parent for meta in root.glob(f"*/{OFFLINE_DIR}/meta.json")), key=_age)


def _write_json(path: Path, document: object) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True), "utf-8")
    os.replace(temporary, path)


def _write_all(descriptor: int, data: bytes) -> None:
    """Write all of ``data``; a short write (a disk filling up) goes on until it completes or raises."""
    view = memoryview(data)
    while view:
        written = _write(descriptor, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _create(path: Path) -> int:
    """A new segment file, opened for writing; an existing file is never overwritten."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)


def _segment_id(path: Path) -> int:
    """The id in a segment's name; ``ValueError`` for a ``*.seg`` file that is not named as a segment."""
    if len(path.stem) != 20 or not path.stem.isdigit():
        raise ValueError(f"{path.name} is not a spool segment (named <20 digits>.seg)")
    return int(path.stem)


def _check_magic(path: Path) -> None:
    """``ValueError`` for a segment of another format (version); a segment cut short in its magic holds nothing."""
    with path.open("rb") as file:
        start = file.read(len(MAGIC))
    if MAGIC.startswith(start):
        return
    if len(start) == len(MAGIC) and start[:-1] == MAGIC[:-1]:
        raise ValueError(f"{path.name}: spool format version {start[-1]}; this tracelet-core reads version {FORMAT_VERSION}")
    raise ValueError(f"{path.name} is not a spool segment (it does not start with {MAGIC[:-1].decode()})")


@attrs.frozen
class Damage:
    """A region of a segment that could not be read (a torn or corrupt frame): skipped, its records lost."""

    path: Path
    start: int
    """Byte offset of the first unreadable byte."""
    end: int
    """Byte offset where the skipped region ends (the segment's end)."""
    reason: str
    """``torn frame``, ``checksum mismatch`` or ``corrupt frame header``."""
    records: int | None
    """Records lost, when the region tells (``None``: unknown)."""

    def describe(self) -> str:
        """One line: ``skipped bytes START-END of PATH: REASON (N records lost)``."""
        if self.records is None:
            lost = "an unknown number of records"
        else:
            lost = f"{self.records} record" + ("s" if self.records != 1 else "")
        return f"skipped bytes {self.start}-{self.end} of {self.path}: {self.reason} ({lost} lost)"


def _inspect(path: Path, start: int, end: int) -> Damage:
    """What the unreadable region ``[start, end)`` of a segment is, and how many records it held if that can be told."""
    with path.open("rb") as file:
        file.seek(start)
        region = file.read(end - start)
    if len(region) < _FRAME.size:
        return Damage(path, start, end, "torn frame", 1)
    length, _ = _FRAME.unpack_from(region)
    if length > _MAX_FRAME:
        return Damage(path, start, end, "corrupt frame header", None)
    if _FRAME.size + length > len(region):
        return Damage(path, start, end, "torn frame", 1)  # the write of the last frame was cut short
    # A payload's bytes are damaged: if the length fields from here lead exactly to the end, each is a record.
    offset = count = 0
    while offset + _FRAME.size <= len(region):
        length, _ = _FRAME.unpack_from(region, offset)
        if length > _MAX_FRAME:
            break
        offset += _FRAME.size + length
        count += 1
    return Damage(path, start, end, "checksum mismatch", count if offset == len(region) else None)


# --- the spool of one backend --------------------------------------------------------------


@attrs.define
class _Segment:
    id: int
    path: Path
    size: int
    """Bytes written (the final size once closed)."""
    acked: int = len(MAGIC)
    """Bytes delivered, from the start of the file."""


class BackendSpool:
    """Segments of one backend in one run: append at the tail, prepend at the head, read and ack in order.

    Files are created on the first write. ``pending`` counts records written
    and not yet acknowledged in this process: exactly the records a replay
    would read, because a write that raises leaves none of its records behind.
    """

    def __init__(
        self,
        directory: Path,
        run: RunInfo,
        backend: str,
        *,
        fsync_interval: float,
        create_lock: bool = True,
    ) -> None:
        self.directory = directory
        self._run = run
        self._backend = backend
        self._fsync_interval = fsync_interval
        self._create_lock = create_lock
        self._segments: list[_Segment] = []
        self._writer: int | None = None
        """File descriptor of the open tail segment (unbuffered: what append wrote is in the file)."""
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._lock_file: BinaryIO | None = None
        self._opened = False
        self._ref: BackendRunRef | None = None
        self._status: RunStatus | None = None
        self._highest_id = _FIRST_ID - 1
        """The highest segment id ever used here: the next tail segment gets the one above."""
        self._lowest_id = _FIRST_ID
        """The lowest segment id ever used here: the next head segment gets the one below."""
        self._acked_on_disk = False
        self.pending = 0
        self.damaged: list[Damage] = []
        """Unreadable regions that :meth:`read` skipped, in order (``tracelet replay`` reports them)."""
        self.rejected: BackendSpool | None = None
        if create_lock:
            self.rejected = BackendSpool(directory / "rejected", run, backend, fsync_interval=fsync_interval, create_lock=False)

    # --- opening ---------------------------------------------------------------

    @classmethod
    def open_existing(cls, directory: Path, run: RunInfo, backend: str) -> BackendSpool:
        """A spool left on disk (for replay): its segments, with what was already acknowledged.

        The backend run and the status in ``meta.json``, if there is one, are
        kept when the spool rewrites it. Raises ``ValueError`` for a directory
        this version cannot read: a ``*.seg`` file not named as a segment, or a
        segment of another format version.
        """
        spool = cls(directory, run, backend, fsync_interval=0.0, create_lock=False)
        spool._opened = directory.is_dir()
        acked = _read_acked(directory)
        for path in sorted(directory.glob("*.seg")):
            segment_id = _segment_id(path)
            _check_magic(path)
            size = path.stat().st_size
            delivered = max(len(MAGIC), acked.get(segment_id, len(MAGIC)))
            if delivered > size:  # acked.json was damaged: send the segment again whole rather than skip it
                _log.warning("acked.json names more than its segment holds; the segment is sent from its start", path=str(path))
                delivered = len(MAGIC)
            spool._segments.append(_Segment(segment_id, path, size, delivered))
        spool._segments.sort(key=lambda segment: segment.id)
        used = [segment.id for segment in spool._segments] + list(acked)
        spool._highest_id = max([spool._highest_id, *used])
        spool._lowest_id = min([spool._lowest_id, *used])
        spool._acked_on_disk = (directory / "acked.json").exists()
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError, cattrs.BaseValidationError):
            meta = json.loads((directory / "meta.json").read_text("utf-8"))
            if meta.get("status"):
                spool._status = RunStatus(meta["status"])
            if meta.get("backend_run"):
                spool._ref = _CONVERTER.structure(meta["backend_run"], BackendRunRef)
        return spool

    @classmethod
    def reopen(cls, directory: Path, run: RunInfo, backend: str, *, fsync_interval: float, count: bool = True) -> BackendSpool:
        """The spool an earlier process of the same run left (a resumed run), taken over for writing.

        What it holds stays ahead of everything written now: a worker reads it
        first. New records go to new segments (ids above every one used), so
        nothing written before is ever appended to. Raises ``ValueError`` for a
        directory this version cannot read and ``BlockingIOError`` when another
        process (a running ``tracelet replay``) holds it. ``count``: read the
        segments to count what they hold in :attr:`pending` (an offline
        spool, never read back in-process, is not counted).
        """
        spool = cls.open_existing(directory, run, backend)
        spool._fsync_interval = fsync_interval
        spool._create_lock = True
        spool.rejected = cls.open_existing(directory / "rejected", run, backend)
        spool.rejected._fsync_interval = fsync_interval
        if spool._opened:
            if not spool.acquire():
                raise BlockingIOError(f"{directory} is in use by another process")
            spool._write_meta()
            spool.pending = spool._count_unacknowledged() if count else 0
        return spool

    def _count_unacknowledged(self) -> int:
        count = 0
        for segment in self._segments:
            with segment.path.open("rb") as file:
                count += sum(1 for _ in iter_frames(file, segment.acked, segment.size))
        return count

    def segment_paths(self) -> list[Path]:
        """The segment files, in order (an offline spool's, for ``tracelet sync``)."""
        return [segment.path for segment in self._segments]

    def sync(self) -> None:
        """fsync what was written, now (an offline run's ``flush()``)."""
        self._sync_writer()

    @property
    def exists(self) -> bool:
        """Whether records were written (files exist on disk)."""
        return self._opened and any(self.directory.glob("*.seg"))

    def _ensure_directory(self) -> None:
        """Create the directory, its lock and ``meta.json`` before the first segment.

        Done again by the next write if it failed (a full disk): a segment
        never exists without the ``meta.json`` that makes replay find it.
        """
        if self._opened:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._create_lock:
            if self._lock_file is None:
                self._lock_file = (self.directory / "lock").open("ab")
                if _HAS_FLOCK:
                    fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._write_meta()
        self._opened = True

    def acquire(self) -> bool:
        """Take the cross-process lock of an existing spool (replay); ``False`` if another process holds it."""
        self._lock_file = (self.directory / "lock").open("ab")
        if not _HAS_FLOCK:
            return True
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            return False
        return True

    def set_run(self, run: RunInfo) -> None:
        """Replace the run's identity (a child run's, once its parent's backend run is known); rewritten in
        ``meta.json`` if it exists, so that ``tracelet replay`` creates the backend's run with it."""
        self._run = run
        if self._lock_file is not None:
            self._write_meta()

    def set_ref(self, ref: BackendRunRef | None) -> None:
        """Remember the backend's own run (replay resumes it); rewritten in ``meta.json`` if it exists."""
        self._ref = ref
        if self._lock_file is not None:
            self._write_meta()

    def _write_meta(self) -> None:
        document = {
            "format": "tracelet-spool",
            "version": FORMAT_VERSION,
            "backend": self._backend,
            "run": _CONVERTER.unstructure(self._run),
            "backend_run": None if self._ref is None else _scrubbed_ref(_CONVERTER.unstructure(self._ref)),
            "status": None if self._status is None else self._status.value,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "updated": time.time(),
        }
        _write_json(self.directory / "meta.json", document)

    # --- writing ------------------------------------------------------------------

    def append(self, frames: bytes, count: int) -> None:
        """Append encoded frames (from :func:`encode_records`) holding ``count`` records at the tail.

        All or nothing: when it raises ``OSError`` (a full disk), none of the
        ``count`` records is in the spool — the tail segment was cut back to
        its last good frame and closed, and the next call starts a new one —
        so the caller counts all of them as lost, and nothing written later
        is ever behind a torn frame.
        """
        if not count:
            return
        self._ensure_directory()
        tail = self._segments[-1] if self._segments and self._writer is not None else None
        if tail is None or tail.size >= _SEGMENT_BYTES:
            tail = self._open_tail()
        writer = self._writer
        assert writer is not None
        try:
            _write_all(writer, frames)
        except OSError:
            self._cut_tail(tail)
            raise
        tail.size += len(frames)
        self.pending += count
        self._unsynced = True

    def prepend(self, records: Sequence[Record]) -> tuple[int, list[int]]:
        """Write ``records`` as a new head segment; return its id and each record's end offset.

        All or nothing, like :meth:`append`: when it raises, no file is left.
        The fsync runs on the background sync thread, as the tail's does: the
        router calls this under the worker's lock, and a disk that takes
        seconds to sync must not stall routing.
        """
        self._ensure_directory()
        frames, ends = encode_records(records)
        self._lowest_id -= 1
        segment_id = self._lowest_id
        path = self.directory / f"{segment_id:020d}.seg"
        descriptor = _create(path)
        try:
            _write_all(descriptor, MAGIC + frames)
        except OSError:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                path.unlink()  # half a head segment would replay records the caller counts as lost
            raise
        if self._fsync_interval >= 0:
            _background_sync.submit(descriptor)  # closed by the sync thread once synced
        else:
            os.close(descriptor)
        self._segments.insert(0, _Segment(segment_id, path, len(MAGIC) + len(frames)))
        self.pending += len(records)
        return segment_id, [len(MAGIC) + end for end in ends]

    def reject(self, records: Sequence[Record]) -> None:
        """Keep records the backend refused for good in ``rejected/``, synced (replay sends them again)."""
        assert self.rejected is not None
        self._ensure_directory()
        frames, _ = encode_records(records)
        self.rejected.append(frames, len(records))
        self.rejected._sync_writer()

    def _open_tail(self) -> _Segment:
        self._close_writer(background=True)
        self._highest_id += 1
        segment_id = self._highest_id
        path = self.directory / f"{segment_id:020d}.seg"
        descriptor = _create(path)
        try:
            _write_all(descriptor, MAGIC)
        except OSError:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self._writer = descriptor
        segment = _Segment(segment_id, path, len(MAGIC))
        self._segments.append(segment)
        return segment

    def _cut_tail(self, tail: _Segment) -> None:
        """Close the tail segment after a failed write, cut back to its last good frame (``tail.size``)."""
        descriptor = self._writer
        assert descriptor is not None
        self._writer = None
        try:
            os.ftruncate(descriptor, tail.size)
        except OSError as error:  # pragma: no cover - truncating frees space; seen only on a failing device
            _log.warning(
                "spool segment could not be cut back after a failed write; replay may deliver part of that write",
                path=str(tail.path),
                error=f"{type(error).__name__}: {error}",
            )
        with contextlib.suppress(OSError):
            if self._unsynced and self._fsync_interval >= 0:
                _background_sync.submit(os.dup(descriptor))  # the good frames before the failure
        self._unsynced = False
        os.close(descriptor)

    def _close_writer(self, *, background: bool = False) -> None:
        if self._writer is not None:
            try:
                self._sync_writer(background=background)
            finally:
                os.close(self._writer)
                self._writer = None

    def _sync_writer(self, *, background: bool = False) -> None:
        """Have the written bytes fsynced: now, or on the sync thread (``background``)."""
        if self._writer is not None and self._unsynced:
            self._unsynced = False
            if self._fsync_interval >= 0:
                if background:
                    _background_sync.submit(os.dup(self._writer))
                else:
                    os.fsync(self._writer)
        self._last_sync = time.monotonic()

    def maybe_sync(self) -> None:
        """Have the tail fsynced if ``fsync_interval`` seconds passed since the last sync.

        Writes are unbuffered: what :meth:`append` returned from is in the
        kernel's page cache already, and survives the process being killed.
        """
        if self._unsynced and time.monotonic() - self._last_sync >= self._fsync_interval:
            self._sync_writer(background=True)

    # --- reading and acknowledging ---------------------------------------------------

    def position(self) -> SpoolPosition:
        """The end of what is written now: a request made now is due once reading passed it."""
        if not self._segments:
            return (0, 0)
        tail = self._segments[-1]
        return (tail.id, tail.size)

    def reached(self, position: SpoolPosition) -> bool:
        """Whether everything written before ``position`` is acknowledged."""
        if not self._segments:
            return True
        head = self._segments[0]
        return (head.id, head.acked) >= position

    def read(self, limit: int) -> tuple[list[Record], int, list[int]]:
        """Up to ``limit`` records from the first unacknowledged one, all of one kind.

        Returns the records, the id of their segment and each one's end offset
        (for :meth:`ack`). A corrupt or torn frame ends its segment: what
        follows it there is skipped, logged and added to :attr:`damaged`.
        """
        dropped = False
        try:
            while self._segments:
                head = self._segments[0]
                open_tail = head is self._segments[-1] and self._writer is not None
                records: list[Record] = []
                ends: list[int] = []
                route: tuple[str, str] | None = None
                with head.path.open("rb") as file:
                    for payload, end in iter_frames(file, head.acked, head.size):
                        record = decode_record(payload)
                        kind = ROUTES[type(record)]  # one batch is one routing hook call
                        if route is not None and kind is not route:
                            break
                        route = kind
                        records.append(record)
                        ends.append(end)
                        if len(records) >= limit:
                            break
                if records:
                    return records, head.id, ends
                if open_tail:
                    return [], head.id, []
                if head.acked < head.size:
                    damage = _inspect(head.path, head.acked, head.size)
                    self.damaged.append(damage)
                    _log.warning("spool segment has a torn or corrupt frame; the rest of it is skipped", damage=damage.describe())
                    self.pending = max(0, self.pending - (damage.records or 0))
                    head.acked = head.size
                self._drop_head()
                dropped = True
            return [], 0, []
        finally:
            if dropped:
                self._save_acked()

    def ack(self, segment_id: int, offset: int, count: int) -> None:
        """Record that the ``count`` records of ``segment_id`` up to ``offset`` were delivered."""
        for segment in self._segments:
            if segment.id == segment_id:
                segment.acked = max(segment.acked, offset)
                break
        else:
            return
        self.pending -= count
        head = self._segments[0]
        while head.acked >= head.size and not (head is self._segments[-1] and self._writer is not None):
            self._drop_head()
            if not self._segments:
                break
            head = self._segments[0]
        self._save_acked()

    def undelivered_bytes(self) -> int:
        """Bytes written and not acknowledged (replay's progress measure)."""
        return sum(segment.size - segment.acked for segment in self._segments)

    def drained(self) -> bool:
        """Whether every record written was acknowledged."""
        return all(segment.acked >= segment.size for segment in self._segments)

    def reset_tail(self) -> None:
        """Close and delete a fully acknowledged spool, so the next write starts afresh (with new segment ids)."""
        if self.drained():
            self._close_writer()
            while self._segments:
                self._drop_head()
            self._save_acked()

    def _drop_head(self) -> None:
        segment = self._segments.pop(0)
        if self._writer is not None and not self._segments:
            os.close(self._writer)
            self._writer = None
        segment.path.unlink(missing_ok=True)

    def _save_acked(self) -> None:
        """Make ``acked.json`` name exactly the partly delivered segments on disk (none: no file).

        Called after segments are deleted, never before: a crash in between
        leaves an entry for an id that is never used again, which is harmless.
        """
        offsets = {str(segment.id): segment.acked for segment in self._segments if segment.acked > len(MAGIC)}
        path = self.directory / "acked.json"
        if offsets:
            _write_json(path, offsets)
            self._acked_on_disk = True
        elif self._acked_on_disk:
            path.unlink(missing_ok=True)
            self._acked_on_disk = False

    # --- closing -----------------------------------------------------------------------

    def close(self, status: RunStatus | None) -> bool:
        """Sync and close; delete the files if nothing is left. Returns ``True`` if records are left."""
        if status is not None:
            self._status = status
        if self.rejected is not None:
            self.rejected.close(None)
        if not self._opened:
            return False
        try:
            self._close_writer()
        except OSError as error:  # the bytes are in the page cache; the kernel may still write them
            _log.warning("spool fsync failed at close", path=str(self.directory), error=f"{type(error).__name__}: {error}")
        _background_sync.wait()
        left = not self.drained() or (self.rejected is not None and self.rejected.exists)
        if left:
            if self._lock_file is not None:
                self._write_meta()
        else:
            for segment in self._segments:
                segment.path.unlink(missing_ok=True)
            self._segments.clear()
            for name in ("meta.json", "meta.tmp", "acked.json", "acked.tmp", "lock"):
                (self.directory / name).unlink(missing_ok=True)
            self._acked_on_disk = False
        self.release()
        if not left:
            _remove_empty(self.directory)
        return left

    def release(self) -> None:
        """Give up the cross-process lock without touching the spool's files."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _scrubbed_ref(document: dict[str, Any]) -> dict[str, Any]:
    """A backend run ref for ``meta.json``: its URL without credentials (``http://user:pass@host``)."""
    if isinstance(document.get("url"), str):
        document["url"] = scrub(document["url"])
    return document


def _read_acked(directory: Path) -> dict[int, int]:
    """``acked.json``; an unreadable one counts as empty: its segments are sent again whole, never skipped."""
    try:
        document = json.loads((directory / "acked.json").read_text("utf-8"))
        return {int(key): int(value) for key, value in document.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, AttributeError) as error:
        _log.warning("acked.json is unreadable; its segments are sent from their start", path=str(directory), error=str(error))
        return {}


def _remove_empty(directory: Path) -> None:
    """Remove ``directory`` and its run directory if they are empty."""
    for path in (directory, directory.parent):
        with contextlib.suppress(OSError):
            path.rmdir()


class _BackgroundSync:
    """fsync calls off the router and worker threads.

    ``os.fsync`` releases the GIL but blocks its caller for as long as the
    disk takes (tens of milliseconds for a full segment here); on a thread of
    its own, routing goes on meanwhile. It fsyncs a duplicate of the file
    descriptor, so the spool may close (or delete) its file at once. A record
    is in the kernel's page cache from the ``flush()`` before the hand-over,
    so only a power cut in the few milliseconds until the fsync can lose it.
    The thread exits when it has nothing to do; ``close()`` waits for it, and
    syncs its own tail synchronously.
    """

    def __init__(self) -> None:
        self._descriptors: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, descriptor: int) -> None:
        with self._lock:  # put under the lock: the thread decides to exit under it too
            self._descriptors.put(descriptor)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="tracelet-spool-sync", daemon=True)
                self._thread.start()

    def wait(self, timeout: float = 10.0) -> None:
        """Wait until every submitted descriptor is synced (the thread has exited), at most ``timeout`` s."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _work(self) -> None:
        block_process_signals()
        while True:
            with self._lock:
                if self._descriptors.empty():
                    self._thread = None
                    return
                descriptor = self._descriptors.get()
            try:
                os.fsync(descriptor)
            except OSError as error:
                _log.warning("spool fsync failed", error=f"{type(error).__name__}: {error}")
            finally:
                os.close(descriptor)

    def reset_after_fork(self) -> None:
        """A forked child has no sync thread: start afresh (and leave the parent's descriptors alone)."""
        self._descriptors = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()


_background_sync = _BackgroundSync()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_background_sync.reset_after_fork)
