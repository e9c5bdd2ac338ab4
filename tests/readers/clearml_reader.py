"""Reads a ClearML offline session back: ``~/.clearml/cache/offline/<task id>/``.

``task.json`` (hyperparams, user properties, tags, artifacts) and
``metrics.jsonl`` (one JSON array of events per line: ``training_stats_scalar``
with metric, variant, iter, value, timestamp in ms; ``training_debug_image``
with a ``url`` to the sample's file; ``plot`` with its plotly ``plot_str``).

:func:`read_stored` reads a task into the conformance suite's neutral form
(``StoredRun``), undoing docs/plugins/clearml.md's mapping: the ClearML
conformance tests and the cross-backend parity tests (tests/all) share it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png
from tracelet_clearml.backend import PARAM_SECTION, STATUS_PROPERTY, metric_name


@attrs.define
class OfflineSession:
    folder: Path
    task: dict[str, Any]
    events: list[dict[str, Any]]

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("type") == kind]

    @property
    def hyperparams(self) -> dict[str, dict[str, str]]:
        sections = self.task.get("hyperparams", {})
        return {section: {key: item["value"] for key, item in values.items()} for section, values in sections.items()}

    @property
    def properties(self) -> dict[str, str]:
        return {key: item["value"] for key, item in self.task.get("hyperparams", {}).get("properties", {}).items()}

    @property
    def artifacts(self) -> dict[str, bytes]:
        found = self.task.get("execution", {}).get("artifacts", [])
        return {artifact["key"]: Path(artifact["uri"]).read_bytes() for artifact in found}


def session_folder(task_id: str, home: Path | None = None) -> Path:
    return (home or Path.home()) / ".clearml" / "cache" / "offline" / task_id


def read_session(task_id: str, home: Path | None = None) -> OfflineSession:
    folder = session_folder(task_id, home)
    task = json.loads((folder / "task.json").read_text(encoding="utf-8"))
    events: list[dict[str, Any]] = []
    metrics = folder / "metrics.jsonl"
    if metrics.exists():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            if line.strip():
                events.extend(json.loads(line))
    return OfflineSession(folder, task, events)


def read_stored(run_id: str, home: Path | None = None) -> StoredRun:
    """The task ``run_id`` of the offline sessions under ``home`` (default: ``~``) as a ``StoredRun``."""
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
