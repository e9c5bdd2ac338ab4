"""Read what W&B wrote for an offline run: the ``.wandb`` transaction log and the files beside it.

``wandb.sdk.internal.datastore`` (W&B's own reader) no longer exists in wandb
0.31, so the tests read the file themselves. The format, as wandb-core writes
it (``core/pkg/leveldb`` and ``core/internal/stream``, wandb 0.31.0):

- a 7-byte file header: ``b":W&B"``, the magic ``0xBEE1`` (little-endian
  uint16) and the version byte ``0``;
- then the LevelDB log format: 32 KiB blocks (the header counts towards the
  first one), each holding chunks with a 7-byte chunk header: CRC32 of the
  type byte and the data (LevelDB's masked CRC32-C in LevelDB proper; W&B
  uses plain IEEE CRC32, unmasked; checked here), data length (uint16
  little-endian) and a type: 1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST. A record is
  one FULL chunk or FIRST, MIDDLE..., LAST. When fewer than 7 bytes are left in
  a block, they are zero padding and the next chunk starts in the next block;
- each record's data is one protobuf ``wandb.proto.wandb_internal_pb2.Record``.

What a run's records mean for the tests:

- ``history``: one ``run.log`` row; ``item`` is a list of ``nested_key`` (the
  path of a value inside the row: ``["loss"]``, or ``["grey", "_type"]`` for a
  key of a media value's dict; W&B does not split keys at ``/``) or ``key``,
  and ``value_json``; ``_step``, ``_timestamp`` and ``_runtime`` included;
- ``config``: ``update``/``remove`` items of the run's config (``value_json``);
- ``summary``: ``update`` items of the run's summary;
- ``run``: the run's id, tags, notes..., written at init and when they change;
- ``exit``: the exit code given to ``run.finish``;
- ``files``: files saved in the run's ``files/`` directory.

A resumed offline run writes a new ``offline-run-<time>-<id>`` directory with the
same id: :func:`read_offline_run` reads them in the order they were created.
"""

from __future__ import annotations

import json
import re
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
from wandb.proto import wandb_internal_pb2

from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png

__all__ = ["OfflineRun", "find_run_dirs", "read_finished_run", "read_offline_run", "read_records", "read_stored"]

_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK = 32 * 1024
_CHUNK_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> Iterator[Any]:
    """Every ``Record`` in the ``.wandb`` file ``path``, in the order written; a bad CRC or framing raises."""
    data = path.read_bytes()
    if data[: len(_HEADER)] != _HEADER:
        raise ValueError(f"{path}: not a .wandb file (header {data[:7]!r})")
    position = len(_HEADER)
    pending: bytearray | None = None
    while position + _CHUNK_HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _CHUNK_HEADER:  # the block's trailer: padding
            position += left_in_block
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + _CHUNK_HEADER])
        if checksum == 0 and length == 0 and kind == 0:  # preallocated zeros at the end of the file
            break
        body = data[position + _CHUNK_HEADER : position + _CHUNK_HEADER + length]
        if len(body) != length:
            break  # a chunk cut by a crash: the writer never finished it
        if zlib.crc32(bytes([kind]) + body) != checksum:
            raise ValueError(f"{path}: CRC mismatch at offset {position}")
        position += _CHUNK_HEADER + length
        if kind == _FULL:
            yield _parse(body)
        elif kind == _FIRST:
            pending = bytearray(body)
        elif kind == _MIDDLE and pending is not None:
            pending += body
        elif kind == _LAST and pending is not None:
            pending += body
            yield _parse(bytes(pending))
            pending = None
        else:
            raise ValueError(f"{path}: chunk type {kind} out of sequence at offset {position}")


def _parse(body: bytes) -> Any:
    record = wandb_internal_pb2.Record()
    record.ParseFromString(body)
    return record


def find_run_dirs(root: Path, run_id: str) -> list[Path]:
    """The offline run directories of ``run_id`` under ``root`` (searched recursively), oldest first.

    ``offline-run-<YYYYmmdd_HHMMSS>-<id>``; a part started within the same
    second as an earlier one gets ``-1``, ``-2``, ... appended.
    """
    pattern = re.compile(rf"offline-run-(?P<time>[0-9]{{8}}_[0-9]{{6}})-{re.escape(run_id)}(?:-(?P<suffix>[0-9]+))?")
    found = []
    for path in root.rglob("offline-run-*"):
        match = pattern.fullmatch(path.name)
        if match is not None and path.is_dir():
            found.append(((match["time"], int(match["suffix"] or 0)), path))
    return [path for _, path in sorted(found)]


def _item_key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)


@attrs.define
class OfflineRun:
    """One W&B run as its offline directories hold it."""

    run_id: str
    directories: list[Path]
    history: list[dict[str, Any]] = attrs.Factory(list)
    """Every history row, decoded, in the order written (resumed parts appended)."""
    config: dict[str, Any] = attrs.Factory(dict)
    """The config after every update, W&B's own ``_wandb`` entry removed."""
    summary: dict[str, Any] = attrs.Factory(dict)
    tags: tuple[str, ...] = ()
    notes: str = ""
    group: str = ""
    job_type: str = ""
    display_name: str = ""
    project: str = ""
    exit_codes: list[int] = attrs.Factory(list)
    """One per finished part: the exit code each ``run.finish`` wrote."""
    saved_files: list[str] = attrs.Factory(list)
    """Paths (relative to ``files/``) named by ``files`` records."""
    defined_metrics: list[dict[str, Any]] = attrs.Factory(list)
    """``define_metric`` records: name/glob, step metric, step_sync."""

    def file(self, relative: str) -> bytes:
        """The content of ``files/<relative>`` in the newest part that has it."""
        for directory in reversed(self.directories):
            path = directory / "files" / relative
            if path.is_file():
                return path.read_bytes()
        raise FileNotFoundError(f"no files/{relative} in {[str(d) for d in self.directories]}")

    def files(self) -> dict[str, bytes]:
        """Every file under ``files/`` of every part (later parts win), by relative POSIX path."""
        result: dict[str, bytes] = {}
        for directory in self.directories:
            base = directory / "files"
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    result[path.relative_to(base).as_posix()] = path.read_bytes()
        return result


def read_offline_run(root: Path, run_id: str) -> OfflineRun:
    """Read every offline part of ``run_id`` under ``root`` (a W&B ``dir``)."""
    directories = find_run_dirs(root, run_id)
    if not directories:
        raise FileNotFoundError(f"no offline run {run_id!r} under {root}")
    run = OfflineRun(run_id, directories)
    for directory in directories:
        (log,) = directory.glob("run-*.wandb")
        for record in read_records(log):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                row: dict[str, Any] = {}
                for item in record.history.item:
                    _set(row, item, json.loads(item.value_json))
                run.history.append(row)
            elif kind == "config":
                for item in record.config.update:
                    _set(run.config, item, json.loads(item.value_json))
                for item in record.config.remove:
                    run.config.pop(_item_key(item), None)
            elif kind == "summary":
                for item in record.summary.update:
                    _set(run.summary, item, json.loads(item.value_json))
            elif kind == "run":
                found = record.run
                run.tags = tuple(found.tags)
                run.notes, run.group, run.job_type = found.notes, found.run_group, found.job_type
                run.display_name, run.project = found.display_name, found.project
                if found.config.update:
                    for item in found.config.update:
                        _set(run.config, item, json.loads(item.value_json))
            elif kind == "exit":
                run.exit_codes.append(record.exit.exit_code)
            elif kind == "files":
                run.saved_files.extend(item.path for item in record.files.files)
            elif kind == "metric":
                metric = record.metric
                run.defined_metrics.append(
                    {
                        "name": metric.name or metric.glob_name,
                        "step_metric": metric.step_metric,
                        "step_sync": metric.options.step_sync,
                    }
                )
    run.config.pop("_wandb", None)
    return run


def _set(config: dict[str, Any], item: Any, value: Any) -> None:
    if item.nested_key:
        target = config
        for part in item.nested_key[:-1]:
            target = target.setdefault(part, {})
        target[item.nested_key[-1]] = value
    else:
        config[item.key] = value


def read_finished_run(root: Path, run_id: str, timeout: float = 30.0) -> OfflineRun:
    """:func:`read_offline_run` once every part has its exit record (or ``timeout`` seconds have passed).

    ``run.finish()`` returns before wandb-core's writer has flushed the
    ``.wandb`` file when the service lives on after it (the service is the
    script's, or serves another run): reading at once could miss the end.
    """
    deadline = time.monotonic() + timeout
    while True:
        stored = read_offline_run(root, run_id)
        if len(stored.exit_codes) >= len(stored.directories) or time.monotonic() > deadline:
            return stored
        time.sleep(0.05)


# --- the conformance suite's neutral form (the W&B conformance tests and tests/all share it) ---

_STEP_KEY = "tracelet/step"
_STATUS = {0: "FINISHED", 1: "FAILED", 143: "KILLED"}
_OWN_KEYS = frozenset({_STEP_KEY, "_step", "_timestamp", "_runtime"})


def read_stored(store: Path, run_id: str) -> StoredRun:
    """The finished W&B run ``run_id`` under ``store`` (its ``dir``) as a ``StoredRun``.

    Undoes docs/plugins/wandb.md's mapping (see tests/wandb/test_conformance.py's docstring).
    """
    run = read_finished_run(store, run_id)
    # A part that has not finished (abandoned at a deadline) has no exit record yet.
    finished = len(run.exit_codes) == len(run.directories)
    stored = StoredRun(run_id=run_id, status=_STATUS[run.exit_codes[-1]] if finished else None)
    config = dict(run.config)
    stored.tags = {key: str(value) for key, value in config.pop("tracelet_tags", {}).items()}
    stored.params = {key: str(value) for key, value in _flatten(config)}
    files = run.files()
    prefix = "artifacts/"
    stored.artifacts = {path.removeprefix(prefix): data for path, data in files.items() if path.startswith(prefix)}
    for row in run.history:
        step = row[_STEP_KEY]
        for key, value in row.items():
            if key in _OWN_KEYS:
                continue
            kind = value.get("_type") if isinstance(value, dict) else None
            if kind is None:
                stored.metrics.setdefault(key, []).append((step, value, row["_timestamp"]))
            elif kind == "image-file":
                pixels, width, height, channels = decode_png(files[value["path"]])
                stored.images.setdefault(key, []).append(StoredImage(step, width, height, channels, pixels))
            elif kind == "table-file":
                table = json.loads(files[value["path"]])
                assert table["columns"] == ["text"], table
                stored.texts.setdefault(key, []).append((step, table["data"][0][0]))
            elif kind == "histogram":
                stored.histograms.setdefault(key, []).append(StoredHistogram(step, tuple(value["bins"]), tuple(value["values"])))
            else:
                raise AssertionError(f"unexpected W&B value type {kind!r} under {key!r}")
    return stored


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((prefix + key, value))
    return items
