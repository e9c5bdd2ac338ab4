"""Cross-backend parity: what Tracelet sent, and what MLflow, W&B, ClearML and AIM each hold, compared.

- :class:`Stores`: one temporary store per backend (MLflow sqlite or server, a W&B offline
  ``dir``, ClearML's offline sessions under ``~/.clearml``, an AIM repository), given to the
  backends as ``TRACELET_<BACKEND>_<KEY>`` variables, read back with each backend's reader
  (tests/readers: the same readers as the backends' conformance tests).
- :func:`truth_plugin`: a recording backend that every ``tracelet.start()`` loads (enabled by
  default), keeping each record as Tracelet handed it to the backends, artifacts' bytes included:
  the ground truth each store is compared with.
- :func:`differences`: every metric series (steps, values, timestamps to the store's precision),
  params, tags, artifacts byte for byte, images by pixels, histograms by edges and counts, texts,
  run status; :func:`table` lays them out for the failure message.

What each backend adds of its own, as docs/plugins/<backend>.md documents it, is in :data:`OWN`:
Tracelet's ``tracelet.version/plugins/run_id`` tags (MLflow, W&B, ClearML; AIM keeps them apart),
MLflow's ``mlflow.*`` tags, the lossy ``.webp`` preview MLflow's ``log_image`` writes beside each
PNG, and the five summary series MLflow adds per histogram (``<name>/min|max|mean|std|count`` at
each histogram's step, checked as such). And one documented rule on timestamps: W&B groups the
metrics of a batch with the same step into one history row whose ``_timestamp`` is its first
metric's. Anything else extra, missing or different is a difference.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
from aim_reader import read_aim_run
from clearml_reader import read_stored as read_clearml
from mlflow_reader import read_mlflow_run
from wandb_reader import read_stored as read_wandb

from tracelet.plugin import Artifact, PluginInfo, PluginKind, hookimpl
from tracelet.records import Figure, Histogram, Image, Metric, Param, Tag, Text
from tracelet.testing import RecordingBackend
from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png, walk_files

BACKENDS = ("mlflow", "wandb", "clearml", "aim")
PRECISION = {"mlflow": 0.0005, "wandb": 0.0, "clearml": 0.0005, "aim": 0.0}
"""Seconds each store keeps of a timestamp (integer milliseconds: 0.5 ms, rounded), as the conformance tests declare."""
_SLACK = 1e-6


@attrs.frozen
class Own:
    """What a backend stores of its own next to Tracelet's records (not a difference)."""

    tags: re.Pattern[str] | None = None
    artifacts: re.Pattern[str] | None = None
    histogram_summaries: bool = False
    """Five series ``<histogram>/min|max|mean|std|count`` with a point at each of the histogram's steps."""
    row_timestamps: bool = False
    """A point's timestamp may be that of an earlier metric at the same step (one row per step of a batch)."""
    none_param: str = "None"
    """How a param whose value is ``None`` (sent as ``"None"``: the optimizers' ``foreach``, ``fused``) reads back."""


_TRACELET_TAGS = r"tracelet\.(version|plugins|run_id)"
OWN: Mapping[str, Own] = {
    # docs/plugins/mlflow.md: run start tags (MLflow's context tags, Tracelet's), log_image's .webp preview,
    # a histogram's summary metrics.
    "mlflow": Own(
        tags=re.compile(rf"mlflow\..*|{_TRACELET_TAGS}"),
        artifacts=re.compile(r"images/.+\+compressed\.webp"),
        histogram_summaries=True,
    ),
    # docs/plugins/wandb.md: Tracelet's tags in the config's tracelet_tags; a history row's _timestamp.
    "wandb": Own(tags=re.compile(_TRACELET_TAGS), row_timestamps=True),
    # docs/plugins/clearml.md: Tracelet's tags as user properties; a None param as an empty string.
    "clearml": Own(tags=re.compile(_TRACELET_TAGS), none_param=""),
    "aim": Own(),
}
_SUMMARIES = ("min", "max", "mean", "std", "count")


@attrs.define
class Stores:
    """A temporary store per backend, all under ``root``; ``home`` is ClearML's (its offline sessions)."""

    root: Path
    home: Path
    mlflow_uri: str = ""

    def __attrs_post_init__(self) -> None:
        for directory in (self.wandb_dir, self.aim_repo):
            directory.mkdir(parents=True, exist_ok=True)
        if not self.mlflow_uri:
            self.mlflow_uri = f"sqlite:///{self.root}/mlflow.db"

    @property
    def wandb_dir(self) -> Path:
        return self.root / "wandb"

    @property
    def aim_repo(self) -> Path:
        return self.root / "aim"

    def environment(self) -> dict[str, str]:
        """The four backends' settings, as ``tracelet replay`` and ``start()`` read them."""
        return {
            "TRACELET_MLFLOW_TRACKING_URI": self.mlflow_uri,
            "TRACELET_WANDB_DIR": str(self.wandb_dir),
            "TRACELET_CLEARML_OFFLINE": "true",
            "TRACELET_AIM_REPO": str(self.aim_repo),
        }

    def read(self, backend: str, run_id: str) -> StoredRun:
        """The backend run ``run_id`` read back from this backend's store."""
        if backend == "mlflow":
            return read_mlflow_run(self.mlflow_uri, run_id)
        if backend == "wandb":
            return read_wandb(self.wandb_dir, run_id)
        if backend == "clearml":
            return read_clearml(run_id, self.home)
        if backend == "aim":
            return read_aim_run(self.aim_repo, run_id)
        raise ValueError(backend)


class TruthBackend(RecordingBackend):
    """The recording backend, keeping each artifact's bytes as they were when handed to the backends.

    Core deletes the files collectors write (the system collector's requirements) once the run is over.
    """

    made: ClassVar[list[TruthBackend]] = []
    _made_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, settings: object = None) -> None:
        super().__init__()
        self.artifact_bytes: dict[str, bytes] = {}
        with self._made_lock:
            self.made.append(self)

    @hookimpl
    def tracelet_backend_log_artifacts(self, artifacts: Sequence[Artifact]) -> None:
        for artifact in artifacts:
            path = Path(artifact.path)
            if path.is_dir():
                for relative, data in walk_files(path):
                    self.artifact_bytes[f"{artifact.name}/{relative}"] = data
            else:
                self.artifact_bytes[artifact.name] = path.read_bytes()
        super().tracelet_backend_log_artifacts(artifacts)


def truth_plugin() -> object:
    """A plugin object for ``tracelet.register_plugin``: the ``truth`` backend, on in every run."""

    class TruthPlugin:
        @hookimpl
        def tracelet_plugin_info(self) -> PluginInfo:
            return PluginInfo(
                name="truth",
                kind=PluginKind.BACKEND,
                factory=TruthBackend,
                description="tests/all: every record as Tracelet handed it to the backends",
            )

    return TruthPlugin()


def expected_run(truth: TruthBackend) -> StoredRun:
    """What every store should hold: the truth backend's records in the conformance suite's neutral form."""
    assert truth.status is not None, "the run did not end"
    expected = StoredRun(run_id="truth", status=truth.status.value)
    for record in truth.records:
        if isinstance(record, Metric):
            expected.metrics.setdefault(record.name, []).append((record.step, record.value, record.timestamp))
        elif isinstance(record, Param):
            expected.params[record.name] = str(record.value)
        elif isinstance(record, Tag):
            expected.tags[record.name] = record.value
        elif isinstance(record, Image):
            image = StoredImage(record.step, record.width, record.height, record.channels, record.pixels)
            expected.images.setdefault(record.name, []).append(image)
        elif isinstance(record, Figure):
            pixels, width, height, channels = decode_png(record.png)
            expected.images.setdefault(record.name, []).append(StoredImage(record.step, width, height, channels, pixels))
        elif isinstance(record, Histogram):
            histogram = StoredHistogram(record.step, record.edges, record.counts)
            expected.histograms.setdefault(record.name, []).append(histogram)
        elif isinstance(record, Text):
            expected.texts.setdefault(record.name, []).append((record.step, record.text))
    expected.artifacts = dict(truth.artifact_bytes)
    return expected


@attrs.frozen
class Difference:
    """One thing a store holds differently from what Tracelet sent."""

    backend: str
    kind: str
    name: str
    sent: str
    stored: str


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same_value(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _series_differences(
    backend: str,
    name: str,
    sent: list[tuple[int, float, float]],
    stored: list[Any],
    times_at: Mapping[int, list[float]],
) -> list[Difference]:
    """Points compared as (step, value) in step order, and timestamps to the store's precision.

    In step order (then value), not logging order: a store's read order of points with equal
    milliseconds is its own (the conformance suite checks logging order with distinct timestamps).
    """
    found: list[Difference] = []
    if len(sent) != len(stored):
        found.append(Difference(backend, "metric points", name, str(len(sent)), str(len(stored))))
    ordered_sent = sorted(sent, key=lambda point: (point[0], point[2]))
    ordered_stored = sorted(stored, key=lambda point: (point[0], point[2]))
    for index, ((step, value, when), (stored_step, stored_value, stored_when)) in enumerate(
        zip(ordered_sent, ordered_stored, strict=False)
    ):
        if step != stored_step or not _same_value(value, float(stored_value)):
            found.append(
                Difference(backend, "metric point", f"{name}[{index}]", f"{step}: {value!r}", f"{stored_step}: {stored_value!r}")
            )
            break
        exact = abs(when - stored_when) <= PRECISION[backend] + _SLACK
        if OWN[backend].row_timestamps and not exact:  # the time of an earlier metric at this step: the row's
            exact = stored_when <= when and any(abs(t - stored_when) <= _SLACK for t in times_at.get(step, ()))
        if not exact:
            found.append(Difference(backend, "metric time", f"{name}[{index}]", repr(when), repr(stored_when)))
            break
    return found


def _mapping_differences(
    backend: str, kind: str, sent: Mapping[str, Any], stored: Mapping[str, Any], own: re.Pattern[str] | None
) -> list[Difference]:
    found = []
    for key in sorted(set(sent) | set(stored)):
        if key not in sent and own is not None and own.fullmatch(key):
            continue
        if sent.get(key, _MISSING) != stored.get(key, _MISSING):
            found.append(Difference(backend, kind, key, _describe(sent.get(key, _MISSING)), _describe(stored.get(key, _MISSING))))
    return found


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING = _Missing()


def _describe(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, list):
        return f"{len(value)} items: {_short(value)}"
    return _short(value)


def differences(expected: StoredRun, stored: Mapping[str, StoredRun]) -> list[Difference]:
    """Every difference between what Tracelet sent (``expected``) and each backend's store."""
    found: list[Difference] = []
    times_at: dict[int, list[float]] = {}
    for points in expected.metrics.values():
        for step, _, when in points:
            times_at.setdefault(step, []).append(when)
    for backend, run in stored.items():
        own = OWN[backend]
        metrics = dict(run.metrics)
        if own.histogram_summaries:
            found.extend(_summary_differences(backend, expected, metrics))
        if run.status != expected.status:
            found.append(Difference(backend, "status", "", repr(expected.status), repr(run.status)))
        for name in sorted(set(expected.metrics) | set(metrics)):
            if name not in metrics or name not in expected.metrics:
                sent_points, stored_points = len(expected.metrics.get(name, [])), len(metrics.get(name, []))
                found.append(Difference(backend, "metric series", name, f"{sent_points} points", f"{stored_points} points"))
                continue
            found.extend(_series_differences(backend, name, expected.metrics[name], metrics[name], times_at))
        params = {name: own.none_param if value == "None" else value for name, value in expected.params.items()}
        found.extend(_mapping_differences(backend, "param", params, run.params, None))
        found.extend(_mapping_differences(backend, "tag", expected.tags, run.tags, own.tags))
        found.extend(_mapping_differences(backend, "artifact", expected.artifacts, run.artifacts, own.artifacts))
        for kind, sent_media, stored_media in (
            ("image", expected.images, run.images),
            ("histogram", expected.histograms, run.histograms),
            ("text", expected.texts, run.texts),
        ):
            sorted_sent = {name: sorted(items, key=_by_step) for name, items in sent_media.items()}
            sorted_stored = {name: sorted(items, key=_by_step) for name, items in stored_media.items()}
            found.extend(_mapping_differences(backend, kind, sorted_sent, sorted_stored, None))
    return found


def _summary_differences(backend: str, expected: StoredRun, metrics: dict[str, list[Any]]) -> list[Difference]:
    """Takes a histogram's summary series out of ``metrics``: each has a point at each of its steps."""
    found = []
    for name, histograms in expected.histograms.items():
        steps = sorted(histogram.step for histogram in histograms)
        for summary_name in (f"{name}/{kind}" for kind in _SUMMARIES):
            if summary_name in expected.metrics:  # logged by the user too: compared as a series
                continue
            stored_steps = sorted(point[0] for point in metrics.pop(summary_name, []))
            if stored_steps != steps:
                found.append(Difference(backend, "histogram summary", summary_name, f"steps {steps}", f"steps {stored_steps}"))
    return found


def _by_step(item: Any) -> int:
    return int(item[0] if isinstance(item, tuple) else item.step)


def table(found: Iterable[Difference]) -> str:
    """The differences as a fixed-width table, one row each."""
    rows = [("backend", "kind", "name", "sent", "stored")] + [(d.backend, d.kind, d.name, d.sent, d.stored) for d in found]
    widths = [min(60, max(len(row[column]) for row in rows)) for column in range(5)]
    return "\n".join("  ".join(cell[:60].ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def summary(expected: StoredRun) -> dict[str, int]:
    """How much was compared: series, points, params, tags, artifacts, images, histograms, texts."""
    return {
        "series": len(expected.metrics),
        "points": sum(len(points) for points in expected.metrics.values()),
        "params": len(expected.params),
        "tags": len(expected.tags),
        "artifacts": len(expected.artifacts),
        "images": sum(len(images) for images in expected.images.values()),
        "histograms": sum(len(items) for items in expected.histograms.values()),
        "texts": sum(len(items) for items in expected.texts.values()),
    }


def git_repository(directory: Path, files: Iterable[Path]) -> None:
    """Make ``directory`` a git repository with ``files`` committed: the git collector has a commit to record."""
    import subprocess

    environment = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(directory)], check=True, env=environment)
    subprocess.run(["git", "-C", str(directory), "add", *(str(path) for path in files)], check=True, env=environment)
    subprocess.run(["git", "-C", str(directory), "commit", "--quiet", "-m", "example"], check=True, env=environment)
