"""Records checked at the door: every record, whatever made it, is valid before a backend or the spool sees it.

The router thread calls :meth:`RecordChecker.check` on every record object in
the intake: those the logging API built, and those a collector, a framework
plugin or ``Run.log_record`` handed in ready-made. (The hot path's metric
tuples are built by ``Run.log_metric``, which already guarantees their types;
the router checks only their names and step range, see
:meth:`RecordChecker.metric_name` and :data:`STEP_RANGE`.)

What a record must be, per field (``docs/reliability.md``, "Hostile input"):

- names: a non-empty ``str`` (anything else becomes ``str(name)``);
- text (names, tag and text values, param strings): valid Unicode that
  encodes to UTF-8. A lone surrogate (``"\\ud800"``, from a bad decode) is
  replaced by U+FFFD: no backend can store it;
- steps: an ``int`` within int64 (what every backend and the spool store);
  a whole float becomes an int, anything else refuses the record;
- metric values: one real number as a ``float`` (NaN and ±inf kept);
- timestamps: finite seconds since the epoch (ms/µs/ns are divided down,
  an unusable one is replaced by now);
- param values: ``str``, ``int``, ``float``, ``bool`` or ``None`` (anything
  else is converted as ``log_params`` converts it);
- images: ``width`` and ``height`` above 0, 1, 3 or 4 channels, exactly
  ``width * height * channels`` bytes of pixels;
- histograms: ``len(edges) == len(counts) + 1`` and at least one bin;
- figures: non-empty PNG bytes;
- artifacts: a non-empty absolute path that exists when the router sees it.

A record that cannot be made valid is refused: counted in
``stats().rejected`` and warned about once per (kind, name); one that was
changed is counted in ``stats().normalised``. Nothing here raises.
"""

from __future__ import annotations

import operator
import os
import time
from typing import Any, TypeVar

import attrs

from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, Record, Tag, Text
from tracelet.values import (
    MILLISECONDS_FROM,
    Tally,
    name_label,
    short_repr,
    to_metric_value,
    to_name,
    to_param_value,
    to_timestamp,
)

__all__ = ["STEP_RANGE", "RecordChecker", "valid_text"]

STEP_RANGE = (-(2**63), 2**63 - 1)
"""The steps every backend and the spool can store: int64."""

_KIND = {
    Metric: "metric",
    Param: "param",
    Tag: "tag",
    Artifact: "artifact",
    Image: "image",
    Text: "text",
    Histogram: "histogram",
    Figure: "figure",
}
_R = TypeVar("_R")
_MAX_KNOWN_NAMES = 100_000  # metric names checked once and remembered; beyond this the memory is started afresh


class _Refused(Exception):
    """A record that cannot be made valid; the message says why."""


def valid_text(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (the same object when it had none)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in text)
    return text


class RecordChecker:
    """Validates and normalises records on the router thread (see the module docstring)."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self.known_names: set[str] = set()
        """Metric names already checked (the router tests membership inline)."""

    def metric_name(self, name: object) -> str | None:
        """A hot-path metric's name, checked once per distinct name; ``None`` when refused."""
        if type(name) is str and name in self.known_names:
            return name
        try:
            checked = self._name("metric", name)
        except _Refused as refusal:
            self._tally.reject("metric", name_label(name), str(refusal))
            return None
        if len(self.known_names) >= _MAX_KNOWN_NAMES:
            self.known_names.clear()
        self.known_names.add(checked)
        return checked

    def check(self, record: Record) -> Record | None:
        """``record`` made valid (the same object when it already was), or ``None`` when refused."""
        kind = _KIND[type(record)]
        self._changes: list[str] = []
        try:
            name = self._name(kind, record.name)
            checked = _CHECKS[type(record)](self, record, name)
        except _Refused as refusal:
            self._tally.reject(kind, _label(record), str(refusal))
            return None
        except Exception as error:  # noqa: BLE001 - a hostile object inside a record refuses it, never the router
            self._tally.reject(kind, _label(record), f"unusable field: {type(error).__name__}: {short_repr(error)}")
            return None
        for change in self._changes:
            self._tally.normalise(kind, checked.name, change)
        return checked  # type: ignore[no-any-return]

    # --- fields --------------------------------------------------------------------

    def _name(self, kind: str, name: object) -> str:
        checked = to_name(name)
        if checked is None:
            raise _Refused("a name must be a non-empty string")
        if type(name) is not str:
            self._tally.normalise(kind, checked, f"a {type(name).__name__} name; str() of it used")
        fixed = valid_text(checked)
        if fixed is not checked:
            self._tally.normalise(kind, fixed, "a lone surrogate in the name was replaced by U+FFFD")
        return fixed

    def _text(self, value: object, what: str) -> str:
        if type(value) is not str:
            try:
                text = str(value)
            except Exception as error:  # noqa: BLE001 - a hostile __str__
                raise _Refused(f"{what}: cannot turn a {type(value).__name__} into text: {short_repr(error)}") from None
            self._changes.append(f"{what}: a {type(value).__name__}; str() of it used")
            value = text
        fixed = valid_text(value)
        if fixed is not value:
            self._changes.append(f"{what}: a lone surrogate was replaced by U+FFFD")
        return fixed

    def _step(self, step: object) -> int:
        if type(step) is not int:
            if isinstance(step, float) and step.is_integer():
                self._changes.append(f"step {step!r} is a float; {int(step)} used")
                step = int(step)
            else:
                try:
                    step = operator.index(step)  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - None, a str, a hostile __index__
                    raise _Refused(f"step {short_repr(step)} is not an integer") from None
        low, high = STEP_RANGE
        if not low <= step <= high:
            raise _Refused(f"step {short_repr(step)} is outside int64, which no backend can store")
        return step

    def _timestamp(self, timestamp: object) -> float:
        if type(timestamp) is float and 0.0 <= timestamp <= MILLISECONDS_FROM:
            return timestamp
        seconds = to_timestamp(timestamp)
        if seconds is None:
            self._changes.append(f"timestamp {short_repr(timestamp)} is not seconds since the epoch; now used")
            return time.time()
        if seconds != timestamp:
            self._changes.append(f"timestamp {short_repr(timestamp)} taken as ms/µs/ns since the epoch")
        return seconds

    def _real(self, value: object, what: str) -> float:
        if type(value) is float:
            return value
        number = to_metric_value(value)
        if number is None:
            raise _Refused(f"{what}: a {type(value).__name__} is not a single real number")
        return number

    # --- one method per record type ---------------------------------------------------

    def _metric(self, record: Metric, name: str) -> Metric:
        value = self._real(record.value, "value")
        step = self._step(record.step)
        timestamp = self._timestamp(record.timestamp)
        if (name, value, step, timestamp) == tuple(record) and all(map(_same_type, (name, value, step, timestamp), record)):
            return record
        return Metric(name, value, step, timestamp)

    def _param(self, record: Param, name: str) -> Param:
        value: Any = record.value
        if not (value is None or type(value) in (str, int, float, bool)):
            try:
                value = to_param_value(value)
            except Exception as error:  # noqa: BLE001 - a hostile __str__
                raise _Refused(f"cannot turn a {type(record.value).__name__} into a param value: {short_repr(error)}") from None
            self._changes.append(f"a {type(record.value).__name__} value; converted as log_params does")
        if type(value) is str:
            value = self._text(value, "value")
        return _evolved(record, name=name, value=value)

    def _tag(self, record: Tag, name: str) -> Tag:
        return _evolved(record, name=name, value=self._text(record.value, "value"))

    def _artifact(self, record: Artifact, name: str) -> Artifact:
        path: object = record.path
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif not isinstance(path, str):
            raise _Refused(f"path: a {type(path).__name__} is not a path")
        if not path:
            raise _Refused("path is empty")
        if not os.path.isabs(path):
            raise _Refused(f"path {path!r} is not absolute")
        if not os.path.exists(path):
            raise _Refused(f"no file or directory at {path!r}")
        return _evolved(record, name=name, path=path)

    def _image(self, record: Image, name: str) -> Image:
        width = self._count(record.width, "width")
        height = self._count(record.height, "height")
        channels = self._count(record.channels, "channels")
        if width <= 0 or height <= 0:
            raise _Refused(f"an empty image ({width}x{height})")
        if channels not in (1, 3, 4):
            raise _Refused(f"{channels} channels; an image has 1, 3 or 4")
        pixels = record.pixels
        if not isinstance(pixels, bytes):
            raise _Refused(f"pixels: a {type(pixels).__name__}, not bytes")
        if len(pixels) != width * height * channels:
            raise _Refused(f"{len(pixels)} bytes of pixels for {width}x{height}x{channels}")
        return _evolved(record, name=name, step=self._step(record.step), timestamp=self._timestamp(record.timestamp))

    def _text_record(self, record: Text, name: str) -> Text:
        return _evolved(
            record,
            name=name,
            text=self._text(record.text, "text"),
            step=self._step(record.step),
            timestamp=self._timestamp(record.timestamp),
        )

    def _histogram(self, record: Histogram, name: str) -> Histogram:
        edges = tuple(self._real(edge, "edges") for edge in record.edges)
        counts = tuple(self._real(count, "counts") for count in record.counts)
        if not counts or len(edges) != len(counts) + 1:
            raise _Refused(f"{len(edges)} edges for {len(counts)} bins; a histogram has one edge more than bins, and a bin")
        return _evolved(
            record,
            name=name,
            edges=edges,
            counts=counts,
            minimum=self._real(record.minimum, "minimum"),
            maximum=self._real(record.maximum, "maximum"),
            total=self._real(record.total, "total"),
            count=self._count(record.count, "count"),
            sum_squares=self._real(record.sum_squares, "sum_squares"),
            step=self._step(record.step),
            timestamp=self._timestamp(record.timestamp),
        )

    def _figure(self, record: Figure, name: str) -> Figure:
        if not isinstance(record.png, bytes) or not record.png:
            raise _Refused("png: empty or not bytes")
        return _evolved(record, name=name, step=self._step(record.step), timestamp=self._timestamp(record.timestamp))

    @staticmethod
    def _count(value: object, what: str) -> int:
        try:
            return operator.index(value)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - None, a float, a hostile __index__
            raise _Refused(f"{what}: {short_repr(value)} is not an integer") from None


_CHECKS: dict[type, Any] = {
    Metric: RecordChecker._metric,
    Param: RecordChecker._param,
    Tag: RecordChecker._tag,
    Artifact: RecordChecker._artifact,
    Image: RecordChecker._image,
    Text: RecordChecker._text_record,
    Histogram: RecordChecker._histogram,
    Figure: RecordChecker._figure,
}


def _same_type(new: object, old: object) -> bool:
    return type(new) is type(old)


def _evolved(record: _R, **fields: Any) -> _R:
    """``record`` itself when no field changed (identity and type), else a copy with the new fields."""
    for key, value in fields.items():
        old = getattr(record, key)
        if value is not old and (type(value) is not type(old) or value != old):
            return attrs.evolve(record, **fields)  # type: ignore[misc]
    return record


def _label(record: Record) -> str:
    return name_label(getattr(record, "name", None))
