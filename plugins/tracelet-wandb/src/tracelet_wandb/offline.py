"""What earlier offline parts of a W&B run hold: the next history row number for a resumed offline run.

``wandb.init(id=..., resume="allow")`` in offline mode cannot ask the server
where the run stands: the new part (a new ``offline-run-<time>-<id>``
directory) numbers its history rows (``_step``) from 0 again, and when the
parts are synced, W&B ignores rows whose ``_step`` is below the run's current
one. So on an offline resume the backend reads the earlier parts' ``.wandb``
files and goes on from their last row.

The ``.wandb`` format (wandb 0.31): a 7-byte header ``:W&B`` + ``0xBEE1``
(uint16 LE) + version ``0``; then LevelDB-log framing: 32 KiB blocks of
chunks, each with a 7-byte header (CRC32, uint16 LE length, type 1 FULL,
2 FIRST, 3 MIDDLE, 4 LAST); a record is a protobuf ``Record``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["last_row_step", "read_records"]

_HEADER_LENGTH = 7
_BLOCK = 32 * 1024
_CHUNK_HEADER = 7
_FULL, _FIRST, _LAST = 1, 2, 4


def read_records(path: Path) -> Iterator[bytes]:
    """The serialised records of a ``.wandb`` file, in order; stops at the first damaged or unfinished chunk."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        return
    position = _HEADER_LENGTH
    pending = bytearray()
    while position + _CHUNK_HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _CHUNK_HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _CHUNK_HEADER])
        body = data[position + _CHUNK_HEADER : position + _CHUNK_HEADER + length]
        if kind == 0 or len(body) != length:
            return
        position += _CHUNK_HEADER + length
        if kind == _FULL:
            yield body
        elif kind == _FIRST:
            pending = bytearray(body)
        else:
            pending += body
            if kind == _LAST:
                yield bytes(pending)


def last_row_step(wandb_dir: Path, run_id: str, exclude: Path) -> int | None:
    """The highest ``_step`` of the history rows of ``run_id``'s offline parts in ``wandb_dir``, but ``exclude``."""
    from wandb.proto import wandb_internal_pb2

    part = re.compile(rf"offline-run-[0-9]{{8}}_[0-9]{{6}}-{re.escape(run_id)}(?:-[0-9]+)?")
    highest: int | None = None
    for directory in wandb_dir.glob("offline-run-*"):
        if not part.fullmatch(directory.name) or directory.resolve() == exclude.resolve():
            continue
        for log in directory.glob("run-*.wandb"):
            for body in read_records(log):
                record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf code
                record.ParseFromString(body)
                if record.WhichOneof("record_type") != "history":
                    continue
                for item in record.history.item:
                    if item.key == "_step" or list(item.nested_key) == ["_step"]:
                        step = int(json.loads(item.value_json))
                        highest = step if highest is None else max(highest, step)
    return highest
