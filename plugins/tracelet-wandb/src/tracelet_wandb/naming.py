"""W&B's rules for names and values, applied without importing wandb.

- Keys starting with ``_`` are W&B's own (``_step``, ``_timestamp``,
  ``_runtime``, ``_wandb``): a Tracelet name starting with ``_``, and a name
  equal to one of the backend's own keys (:data:`STEP_KEY`,
  :data:`TAGS_CONFIG_KEY`), is stored under ``tracelet/<name>`` instead.
- A W&B run tag (label) is 1 to 64 characters (:data:`MAX_LABEL_LENGTH`).
- ``wandb.Histogram`` takes at most 512 bins (:data:`MAX_HISTOGRAM_BINS`):
  :func:`rebin` merges neighbouring bins of a longer histogram.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = [
    "MAX_HISTOGRAM_BINS",
    "MAX_LABEL_LENGTH",
    "RENAME_PREFIX",
    "STEP_KEY",
    "TAGS_CONFIG_KEY",
    "KeyMapper",
    "label_of",
    "rebin",
    "sanitise_key",
]

STEP_KEY = "tracelet/step"
"""The history key holding each row's Tracelet step: every metric's x-axis (``define_metric``)."""
TAGS_CONFIG_KEY = "tracelet_tags"
"""The config entry holding the run's Tracelet tags, ``{name: value}``."""
RENAME_PREFIX = "tracelet/"
"""Prefix of a name W&B reserves (``_...``) or the backend uses itself."""
MAX_LABEL_LENGTH = 64
"""W&B's limit on a run tag (``wandb.Settings.run_tags``), wandb 0.31."""
MAX_HISTOGRAM_BINS = 512
"""``wandb.Histogram.MAX_LENGTH``, wandb 0.31."""

_RESERVED = frozenset({STEP_KEY, TAGS_CONFIG_KEY})


def sanitise_key(name: str) -> str:
    """The W&B key of a metric, media or top-level config name."""
    if name.startswith("_") or name in _RESERVED or not name:
        return RENAME_PREFIX + name
    return name


def label_of(name: str, value: str) -> str | None:
    """The W&B run tag showing the Tracelet tag ``name=value``: ``"name:value"``, or ``None`` if over 64 characters."""
    label = f"{name}:{value}"
    return label if len(label) <= MAX_LABEL_LENGTH else None


def rebin(edges: Sequence[float], counts: Sequence[float]) -> tuple[list[float], list[float]]:
    """At most :data:`MAX_HISTOGRAM_BINS` bins: each run of ``ceil(n / 512)`` neighbouring bins becomes one.

    Counts are summed, so the total is kept; the outer edges are kept.
    """
    factor = math.ceil(len(counts) / MAX_HISTOGRAM_BINS)
    if factor <= 1:
        return list(edges), list(counts)
    merged_counts = [math.fsum(counts[start : start + factor]) for start in range(0, len(counts), factor)]
    merged_edges = [edges[start] for start in range(0, len(counts), factor)] + [edges[-1]]
    return merged_edges, merged_counts


class KeyMapper:
    """Maps names to W&B keys, remembered per name; ``on_rename(name, key)`` is called once per renamed name."""

    def __init__(self, on_rename: Callable[[str, str], None]) -> None:
        self._on_rename = on_rename
        self._keys: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = sanitise_key(name)
            if key != name:
                self._on_rename(name, key)
        return key
