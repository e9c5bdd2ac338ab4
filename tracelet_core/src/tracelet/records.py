"""The immutable records that flow from a training script to every backend.

Every record is a frozen, slotted attrs class, except :class:`Metric`. Records are built once and
shared by every backend's worker, so a backend must never mutate one.
Timestamps are seconds since the epoch (``time.time()``), steps are ints.

The hot path (``log_metric``) does not build a :class:`Metric` on the caller's
thread: it enqueues a plain tuple, and the dispatcher thread turns it into a
:class:`Metric`.
"""

from __future__ import annotations

import enum
from typing import NamedTuple, TypeAlias

import attrs

__all__ = [
    "RECORD_TYPES",
    "Artifact",
    "Figure",
    "Histogram",
    "Image",
    "Media",
    "Metric",
    "Param",
    "ParamValue",
    "Record",
    "RunStatus",
    "Tag",
    "Text",
    "is_record",
    "route_of",
]

ParamValue: TypeAlias = "str | int | float | bool | None"


class RunStatus(str, enum.Enum):
    """How a run ended; every backend maps these onto its own states."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


class Metric(NamedTuple):
    """One scalar value of a named series at a step.

    A named tuple rather than an attrs class, unlike the other records: the
    dispatcher builds one per logged value from the caller's plain tuple, and
    ``tuple.__new__`` is several times cheaper than a frozen attrs ``__init__``.
    """

    name: str
    value: float
    step: int
    timestamp: float


@attrs.frozen
class Param:
    """A run parameter. Nested mappings arrive flattened (``"optim.lr"``)."""

    name: str
    value: ParamValue


@attrs.frozen
class Tag:
    """A string label on the run."""

    name: str
    value: str


@attrs.frozen
class Artifact:
    """A file or directory to upload.

    ``path`` is absolute. ``name`` is the artifact path under which the
    backend stores it (default: the file or directory's base name).
    """

    path: str
    name: str


@attrs.frozen
class Image:
    """An image as raw 8-bit pixels, row-major, ``channels`` per pixel (1, 3 or 4).

    Use :func:`tracelet.media.encode_png` to get PNG bytes.
    """

    name: str
    pixels: bytes
    width: int
    height: int
    channels: int
    step: int
    timestamp: float


@attrs.frozen
class Text:
    """A text snippet at a step."""

    name: str
    text: str
    step: int
    timestamp: float


@attrs.frozen
class Histogram:
    """A distribution: ``counts[i]`` values fell in ``[edges[i], edges[i + 1])``.

    ``len(edges) == len(counts) + 1``. Summary statistics are of the raw
    values when they were available, else derived from the bins.
    """

    name: str
    edges: tuple[float, ...]
    counts: tuple[float, ...]
    minimum: float
    maximum: float
    total: float
    count: int
    sum_squares: float
    step: int
    timestamp: float


@attrs.frozen
class Figure:
    """A plot, rendered to PNG on the caller's thread (figures are not thread-safe)."""

    name: str
    png: bytes
    step: int
    timestamp: float


Media: TypeAlias = "Image | Text | Histogram | Figure"
Record: TypeAlias = "Metric | Param | Tag | Artifact | Image | Text | Histogram | Figure"

RECORD_TYPES: frozenset[type] = frozenset({Metric, Param, Tag, Artifact, Image, Text, Histogram, Figure})


def is_record(item: object) -> bool:
    """Whether ``item`` is one of the record types backends receive (subclasses are not)."""
    return type(item) in RECORD_TYPES


ROUTES: dict[type, tuple[str, str]] = {
    Metric: ("tracelet_backend_log_metrics", "metrics"),
    Param: ("tracelet_backend_log_params", "params"),
    Tag: ("tracelet_backend_set_tags", "tags"),
    Artifact: ("tracelet_backend_log_artifacts", "artifacts"),
    Image: ("tracelet_backend_log_media", "media"),
    Text: ("tracelet_backend_log_media", "media"),
    Histogram: ("tracelet_backend_log_media", "media"),
    Figure: ("tracelet_backend_log_media", "media"),
}
"""Record type -> (the routing hook that takes it, that hook's argument name).

Consecutive records that map to the same hook are delivered in one call (the
four media types share ``tracelet_backend_log_media``)."""


def route_of(record: object) -> tuple[str, str]:
    """The routing hook that takes ``record``, and the name of its argument."""
    return ROUTES[type(record)]
