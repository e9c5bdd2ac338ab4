"""What each Tracelet record becomes in MLflow, as plain data (no mlflow import).

- Timestamps: Tracelet's are float seconds, MLflow's integer milliseconds;
  :func:`to_millis` rounds to the nearest millisecond.
- Collector tags with a native MLflow place (:data:`SOURCE_TAGS`) are set
  twice: under their Tracelet name, the same on every backend, and under
  MLflow's own system tag, which MLflow's UI shows as the run's source.
- Histograms: MLflow has no histogram type. The raw bins go to a JSON
  artifact (:func:`histogram_document`) and the summary statistics become
  ordinary metrics at the histogram's step (:func:`histogram_summaries`), so
  they can be plotted and compared across runs.
- Texts and histograms are files keyed by name and step
  (:func:`media_path`).
"""

from __future__ import annotations

import math
from typing import Any

from tracelet.plugin import Histogram, names

__all__ = ["SOURCE_TAGS", "histogram_document", "histogram_summaries", "media_path", "to_millis"]

SOURCE_TAGS: dict[str, str] = {
    names.GIT_COMMIT: "mlflow.source.git.commit",
    names.GIT_BRANCH: "mlflow.source.git.branch",
    names.GIT_REMOTE_URL: "mlflow.source.git.repoURL",
    names.ENV_SCRIPT: "mlflow.source.name",
}
"""Tracelet's well-known tag -> the MLflow system tag that also receives its value."""


def to_millis(seconds: float) -> int:
    """Seconds since the epoch -> MLflow's integer milliseconds, rounded to the nearest."""
    return int(seconds * 1000.0 + 0.5)


def media_path(kind: str, key: str, step: int, occurrence: int) -> str:
    """The artifact path of a text (``kind="text"``) or histogram (``"histograms"``).

    ``text/<key>/step-0000000042.txt``: the zero-padded step sorts files in
    step order. A second record with the same name and step gets ``-2``, and
    so on, so none overwrites another.
    """
    suffix = "" if occurrence == 1 else f"-{occurrence}"
    extension = "txt" if kind == "text" else "json"
    return f"{kind}/{key}/step-{step:010d}{suffix}.{extension}"


def histogram_document(histogram: Histogram) -> dict[str, Any]:
    """The JSON content of a histogram's artifact: its bins and statistics, unchanged."""
    return {
        "name": histogram.name,
        "step": histogram.step,
        "timestamp": histogram.timestamp,
        "edges": list(histogram.edges),
        "counts": list(histogram.counts),
        "min": histogram.minimum,
        "max": histogram.maximum,
        "sum": histogram.total,
        "count": histogram.count,
        "sum_squares": histogram.sum_squares,
    }


def histogram_summaries(histogram: Histogram) -> list[tuple[str, float]]:
    """``(suffix, value)`` of the metrics logged for a histogram: ``<name>/min``, ``/max``, ``/mean``, ``/std``, ``/count``."""
    count = histogram.count
    mean = histogram.total / count if count else math.nan
    variance = histogram.sum_squares / count - mean * mean if count else math.nan
    return [
        ("min", histogram.minimum),
        ("max", histogram.maximum),
        ("mean", mean),
        ("std", math.sqrt(max(variance, 0.0)) if count else math.nan),
        ("count", float(count)),
    ]
