"""Read an MLflow run back into the conformance suite's neutral form (``StoredRun``).

Shared by tracelet-mlflow's conformance tests (tests/mlflow) and the cross-backend parity tests (tests/all).
:func:`read_mlflow_run` reads the MLflow run back through ``MlflowClient`` and the run's
artifacts, and undoes only what docs/plugins/mlflow.md documents as MLflow's
own storage rules:

- timestamps are integer milliseconds (rounded to the nearest): precision 0.5 ms; a series is read
  in timestamp order (then step), which is logging order for the suite's distinct timestamps;
- +inf / -inf are stored as +/-1.7976931348623157e308 (MLflow's SQL stores), read as +/-inf;
- a param changed after it was logged is stored under ``<key>.v2``, ``.v3``, ...: the last is its value;
- a param longer than 6000 characters holds its first 6000; the full value is ``params/<key>.txt``;
- images and figures are PNG files ``images/<key>+step+<step>+timestamp+<ms>+<uuid>.png``
  (next to a lossy ``+compressed.webp`` preview);
- texts are ``text/<name>/step-<step>.txt``, histograms ``histograms/<name>/step-<step>.json``.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from mlflow import MlflowClient

from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png, walk_files

__all__ = ["read_mlflow_run"]

_VERSIONED = re.compile(r"(?P<key>.+)\.v(?P<version>[0-9]+)")
_IMAGE = re.compile(r"images/(?P<key>.+)\+step\+(?P<step>-?[0-9]+)\+timestamp\+(?P<ms>[0-9]+)\+[^+/]+\.png")
_MEDIA = re.compile(r"(?P<kind>text|histograms)/(?P<name>.+)/step-(?P<step>-?[0-9]+)(?:-(?P<occurrence>[0-9]+))?\.(txt|json)")


def read_mlflow_run(tracking_uri: str, run_id: str) -> StoredRun:
    """The MLflow run ``run_id`` of the store ``tracking_uri`` as a ``StoredRun``, undoing docs/plugins/mlflow.md's rules."""
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    stored = StoredRun(run_id=run_id, status=run.info.status if run.info.status != "RUNNING" else None)
    for key in run.data.metrics:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: (m.timestamp, m.step))
        stored.metrics[key] = [(m.step, _finite_back(m.value), m.timestamp / 1000.0) for m in history]
    stored.tags = dict(run.data.tags)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(client.download_artifacts(run_id, "", directory))
        files = dict(walk_files(root))
    stored.params = _params(run.data.params, files)
    for path, data in sorted(files.items()):
        if (image := _IMAGE.fullmatch(path)) is not None:
            pixels, width, height, channels = decode_png(data)
            name = image["key"].replace("~", "/")
            stored.images.setdefault(name, []).append(StoredImage(int(image["step"]), width, height, channels, pixels))
        elif (media := _MEDIA.fullmatch(path)) is not None:
            step = int(media["step"])
            if media["kind"] == "text":
                stored.texts.setdefault(media["name"], []).append((step, data.decode()))
            else:
                document = json.loads(data)
                histogram = StoredHistogram(step, tuple(document["edges"]), tuple(document["counts"]))
                stored.histograms.setdefault(media["name"], []).append(histogram)
        else:
            stored.artifacts[path] = data
    for images in stored.images.values():
        images.sort(key=lambda image: image.step)
    return stored


def _finite_back(value: float) -> float:
    """MLflow's SQL stores keep +/-inf as +/-max float (docs/plugins/mlflow.md): read them as what was logged."""
    return math.copysign(math.inf, value) if abs(value) == sys.float_info.max else value


def _params(params: Mapping[str, str], files: Mapping[str, bytes]) -> dict[str, str]:
    """Each param's current value: the highest ``<key>.vN``, the full text of a truncated one."""
    latest: dict[str, tuple[int, str]] = {}
    for key, value in params.items():
        versioned = _VERSIONED.fullmatch(key)
        base, version = (versioned["key"], int(versioned["version"])) if versioned and versioned["key"] in params else (key, 1)
        full = files.get(f"params/{key}.txt")
        if version >= latest.get(base, (0, ""))[0]:
            latest[base] = (version, full.decode() if full is not None else value)
    return {key: value for key, (_, value) in latest.items()}
