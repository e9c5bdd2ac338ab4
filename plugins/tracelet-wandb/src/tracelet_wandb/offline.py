"""What earlier offline parts of a W&B run hold: where a resumed offline run goes on.

``wandb.init(id=..., resume="allow")`` in offline mode cannot ask the server
where the run stands: the new part (a new ``offline-run-<time>-<id>``
directory) numbers its history rows (``_step``) from 0 again, and when the
parts are synced, W&B ignores rows whose ``_step`` is below the run's current
one. Nor does it know the run's config, and a config update replaces a
top-level key whole (``optim`` with only ``optim.lr`` would drop ``optim.momentum``).
So on an offline resume the backend reads the earlier parts' ``.wandb`` files:
it goes on from their last row and updates the config they left.

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
from typing import Any

import attrs

__all__ = ["EarlierParts", "earlier_parts", "read_records"]

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


@attrs.frozen
class EarlierParts:
    """What the earlier offline parts of a run left: the highest ``_step`` and the config."""

    last_step: int | None
    config: dict[str, Any]


def earlier_parts(wandb_dir: Path, run_id: str, exclude: Path) -> EarlierParts:
    """Read ``run_id``'s offline parts in ``wandb_dir`` but ``exclude`` (the new part), oldest first."""
    from wandb.proto import wandb_internal_pb2

    pattern = re.compile(rf"offline-run-(?P<time>[0-9]{{8}}_[0-9]{{6}})-{re.escape(run_id)}(?:-(?P<suffix>[0-9]+))?")
    parts = []
    for directory in wandb_dir.glob("offline-run-*"):
        match = pattern.fullmatch(directory.name)
        if match is not None and directory.resolve() != exclude.resolve():
            parts.append(((match["time"], int(match["suffix"] or 0)), directory))
    highest: int | None = None
    config: dict[str, Any] = {}
    for _, directory in sorted(parts):
        for log in directory.glob("run-*.wandb"):
            for body in read_records(log):
                record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf code
                record.ParseFromString(body)
                kind = record.WhichOneof("record_type")
                if kind == "history":
                    for item in record.history.item:
                        if item.key == "_step" or list(item.nested_key) == ["_step"]:
                            step = int(json.loads(item.value_json))
                            highest = step if highest is None else max(highest, step)
                elif kind in ("config", "run"):
                    updates = record.config.update if kind == "config" else record.run.config.update
                    for item in updates:
                        key = item.key or "/".join(item.nested_key)
                        if key != "_wandb":
                            config[key] = json.loads(item.value_json)
                    if kind == "config":
                        for item in record.config.remove:
                            config.pop(item.key or "/".join(item.nested_key), None)
    return EarlierParts(highest, config)
