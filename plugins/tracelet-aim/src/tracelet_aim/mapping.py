"""What each Tracelet record becomes in AIM, as plain data (no aim import): the mapping and its inverse.

Everything here is documented in ``docs/plugins/aim.md``; readers of an AIM
repository (the tests, a user's analysis script) undo it with
:func:`tracelet_name`, :func:`flatten_params` and :func:`histogram_edges`.

- **Series.** A Tracelet name ``<subset>/<rest>`` whose first segment is one
  of the configured subsets (default ``train``, ``val``, ``test``, as AIM's own
  Lightning logger) becomes the AIM sequence ``<rest>`` with context
  ``{"subset": "<subset>"}``; every other name is the AIM name, with the empty
  context. :func:`tracelet_name` reverses it from the stored name and context
  alone.
- **Repeated steps.** An AIM sequence holds one value per step: tracking a step
  again overwrites it. So the first value at a step goes to the sequence, and
  the n-th value at a step that already holds n - 1 values goes to the same
  name with ``"repeat": n`` added to its context. Nothing is overwritten; the
  logging order is the order of the points' timestamps (the record's own
  time, which the backend stores).
- **Params** are nested at their dots under the run's ``hparams``
  (``optim.lr`` -> ``run["hparams"]["optim"]["lr"]``); a name that cannot nest
  (a prefix of it is itself a param, or it has an empty segment) is kept as a
  literal dotted key. :func:`flatten_params` reverses it exactly.
- **Histograms** are ``aim.Distribution`` objects, which keep counts and the
  range of the bins, and imply uniform bins. When a histogram's edges are not
  exactly those uniform edges, its exact edges and counts are also tracked as
  an ``aim.Text`` (JSON) with ``"tracelet": "histogram"`` added to its context.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_SUBSETS",
    "HISTOGRAM_KIND",
    "KIND_KEY",
    "REPEAT_KEY",
    "SUBSET_KEY",
    "StepLedger",
    "aim_series",
    "flatten_params",
    "histogram_document",
    "histogram_edges",
    "nest_params",
    "tracelet_name",
]

DEFAULT_SUBSETS = ("train", "val", "test")
"""The name prefixes that become AIM's ``subset`` context by default (those of AIM's Lightning logger)."""
SUBSET_KEY = "subset"
REPEAT_KEY = "repeat"
"""Context key of the n-th value (n >= 2) logged at a step its sequence already holds."""
KIND_KEY = "tracelet"
"""Context key marking a sequence the backend adds beside a record's own (its value says what it holds)."""
HISTOGRAM_KIND = "histogram"


def aim_series(name: str, subsets: Iterable[str]) -> tuple[str, dict[str, Any]]:
    """The AIM sequence name and context of the Tracelet series ``name``."""
    prefix, separator, rest = name.partition("/")
    if separator and rest and prefix in subsets:
        return rest, {SUBSET_KEY: prefix}
    return name, {}


def tracelet_name(aim_name: str, context: Mapping[str, Any]) -> str:
    """The Tracelet name of the AIM sequence ``aim_name`` with ``context``: the inverse of :func:`aim_series`.

    The ``repeat`` and ``tracelet`` keys the backend adds do not change the name.
    """
    subset = context.get(SUBSET_KEY)
    return f"{subset}/{aim_name}" if subset is not None else aim_name


def nest_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Params as AIM shows them: nested at their dots, where that is reversible.

    Names are placed shortest (fewest segments) first, so a param ``optim``
    keeps its place and a later ``optim.lr`` becomes the literal key
    ``"optim.lr"``. Literal keys contain a dot and sit at the top level only,
    where nesting never puts a dotted key, so nothing collides.
    """
    tree: dict[str, Any] = {}
    for name in sorted(flat, key=lambda key: key.count(".")):
        *parents, leaf = name.split(".")
        node: dict[str, Any] | None = tree if all(parents) and leaf else None
        for segment in parents if node is not None else ():
            child = node.setdefault(segment, {}) if node is not None else None
            node = child if isinstance(child, dict) else None
            if node is None:
                break
        if node is not None and not isinstance(node.get(leaf), dict):
            node[leaf] = flat[name]
        else:
            tree[name] = flat[name]
    return tree


def flatten_params(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The Tracelet params of an AIM ``hparams`` tree: the inverse of :func:`nest_params`."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def histogram_edges(low: float, high: float, bins: int) -> tuple[float, ...]:
    """The edges an ``aim.Distribution`` over ``[low, high]`` with ``bins`` bins implies (``numpy.linspace``, as AIM)."""
    import numpy  # aim's own dependency: only readers and the backend's worker call this

    return tuple(float(edge) for edge in numpy.linspace(low, high, num=bins + 1))


def histogram_document(edges: Iterable[float], counts: Iterable[float]) -> str:
    """The JSON kept beside a distribution whose edges are not uniform: ``{"edges": [...], "counts": [...]}``."""
    return json.dumps({"edges": list(edges), "counts": list(counts)}, allow_nan=True)


class _Series:
    """The steps one AIM sequence holds, compactly.

    Steps logged in increasing order (the common case) are kept as arithmetic
    progressions ``[first, stride, last]``, so a run of a million evenly spaced
    steps costs a few integers. A step at or below the highest one seen is
    counted in ``extra`` (repeated and out-of-order steps, rare).
    """

    __slots__ = ("extra", "highest", "progressions")

    def __init__(self) -> None:
        self.progressions: list[list[int]] = []
        self.extra: dict[int, int] = {}
        self.highest: int | None = None

    def _in_progressions(self, step: int) -> bool:
        from bisect import bisect_right

        index = bisect_right(self.progressions, step, key=lambda progression: progression[0]) - 1
        if index < 0:
            return False
        first, stride, last = self.progressions[index]
        return first <= step <= last and (stride == 0 or (step - first) % stride == 0)

    def add(self, step: int) -> tuple[int, bool]:
        """Count one more value at ``step``: ``(its occurrence, 1 for the first; whether it was appended)``."""
        if self.highest is None or step > self.highest:
            self.highest = step
            last = self.progressions[-1] if self.progressions else None
            if last is not None and last[1] == 0 and last[0] == last[2]:
                last[1] = step - last[0]
                last[2] = step
            elif last is not None and step - last[2] == last[1]:
                last[2] = step
            else:
                self.progressions.append([step, 0, step])
            return 1, True
        occurrence = int(self._in_progressions(step)) + self.extra.get(step, 0) + 1
        self.extra[step] = self.extra.get(step, 0) + 1
        return occurrence, False

    def undo(self, step: int, appended: bool) -> None:
        """Forget the latest :meth:`add` of ``step`` (undone in reverse order of adding)."""
        if not appended:
            if self.extra[step] == 1:
                del self.extra[step]
            else:
                self.extra[step] -= 1
            return
        last = self.progressions[-1]
        if last[0] == last[2]:
            self.progressions.pop()
        else:
            last[2] -= last[1]
            if last[0] == last[2]:
                last[1] = 0
        previous = self.progressions[-1][2] if self.progressions else None
        self.highest = previous


class StepLedger:
    """Which steps each AIM sequence holds, so that a repeated step goes to a ``repeat`` context.

    :meth:`occurrence` counts a value; :meth:`commit` and :meth:`rollback` end
    a batch, so that a batch retried after a failure gets the same
    occurrences again (its points overwrite themselves instead of repeating).
    """

    def __init__(self) -> None:
        self._series: dict[Any, _Series] = {}
        self._pending: list[tuple[_Series, int, bool]] = []

    def occurrence(self, series: object, step: int) -> int:
        """1 for the first value at ``step`` of ``series``, 2 for the second, ..."""
        steps = self._series.get(series)
        if steps is None:
            steps = self._series[series] = _Series()
        occurrence, appended = steps.add(step)
        self._pending.append((steps, step, appended))
        return occurrence

    def seed(self, series: object, steps: Iterable[int], occurrence: int) -> None:
        """Record steps already stored (a resumed run): ``occurrence`` is the repeat they hold (1 for the base)."""
        entry = self._series.get(series)
        if entry is None:
            entry = self._series[series] = _Series()
        for step in sorted(steps):
            if occurrence == 1:
                entry.add(step)
            else:
                entry.extra[step] = max(entry.extra.get(step, 0), occurrence - 1)
        self._pending.clear()

    def commit(self) -> None:
        self._pending.clear()

    def rollback(self) -> None:
        for steps, step, appended in reversed(self._pending):
            steps.undo(step, appended)
        self._pending.clear()
