"""tracelet-clearml passes the conformance suite (tracelet.testing.conformance) against real ClearML offline.

The reader (``clearml_reader``) reads the offline session's ``task.json`` and
``metrics.jsonl`` and the files they name, and undoes only what
docs/plugins/clearml.md documents as the backend's mapping:

- a metric is a ``training_stats_scalar`` event; its name is ``metric_name(metric, variant)``
  (``train/loss`` <-> title ``train``, series ``loss``); timestamps are integer milliseconds;
- params are the hyperparameter section ``General``; tags are the user properties;
- the end status is the user property ``tracelet.status`` (offline, ClearML keeps no task status);
- artifacts are ``execution.artifacts`` (a directory's files as ``<name>/<relative path>``);
- images and figures are ``.png`` debug samples, texts ``.txt`` debug samples, histograms ``plot``
  events whose layout holds ``tracelet.edges`` and whose bar heights are the counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clearml_reader import read_session

from tracelet.testing.conformance import BackendConformance, StoredHistogram, StoredImage, StoredRun, decode_png
from tracelet_clearml.backend import PARAM_SECTION, STATUS_PROPERTY, metric_name


class TestClearmlBackend(BackendConformance):
    backend = "clearml"
    timestamp_precision = 0.0005  # integer milliseconds, rounded to the nearest

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"offline": True}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"task_id": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_stored(run_id)


def read_stored(run_id: str, home: Path | None = None) -> StoredRun:
    session = read_session(run_id, home)
    properties = session.properties
    stored = StoredRun(run_id=run_id, status=properties.get(STATUS_PROPERTY))
    stored.tags = {key: value for key, value in properties.items() if key != STATUS_PROPERTY}
    stored.params = session.hyperparams.get(PARAM_SECTION, {})
    stored.artifacts = session.artifacts
    for event in session.events:
        kind = event["type"]
        if kind == "training_stats_scalar":
            name = metric_name(event["metric"], event["variant"])
            stored.metrics.setdefault(name, []).append((event["iter"], event["value"], event["timestamp"] / 1000.0))
        elif kind == "training_debug_image":
            name = metric_name(event["metric"], event["variant"])
            data = Path(event["url"]).read_bytes()
            if event["url"].endswith(".txt"):
                stored.texts.setdefault(name, []).append((event["iter"], data.decode()))
            else:
                pixels, width, height, channels = decode_png(data)
                stored.images.setdefault(name, []).append(StoredImage(event["iter"], width, height, channels, pixels))
        elif kind == "plot":
            plot = json.loads(event["plot_str"])
            name = metric_name(event["metric"], event["variant"])
            edges = tuple(plot["layout"]["tracelet"]["edges"])
            counts = tuple(plot["data"][0]["y"])
            stored.histograms.setdefault(name, []).append(StoredHistogram(event["iter"], edges, counts))
    return stored
