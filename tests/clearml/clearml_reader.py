"""Reads a ClearML offline session back: ``~/.clearml/cache/offline/<task id>/``.

``task.json`` (hyperparams, user properties, tags, artifacts) and
``metrics.jsonl`` (one JSON array of events per line: ``training_stats_scalar``
with metric, variant, iter, value, timestamp in ms; ``training_debug_image``
with a ``url`` to the sample's file; ``plot`` with its plotly ``plot_str``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs


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
