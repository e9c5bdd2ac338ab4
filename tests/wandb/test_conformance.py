"""tracelet-wandb passes the conformance suite (tracelet.testing.conformance) against real W&B offline.

The reader (``wandb_reader``) reads the offline run's ``.wandb`` log and the
files beside it, and undoes only what docs/plugins/wandb.md documents as the
backend's mapping:

- a metric point is a history row's value at the row's ``tracelet/step``; the row's
  ``_timestamp`` is its time (float seconds: exact); a series is read in row order;
- params are the config, nested at dots: read back flattened with dots, ``str()`` of the value;
- tags are the config entry ``tracelet_tags``;
- artifacts are ``files/artifacts/<name>``;
- images and figures are ``image-file`` values (PNG files under ``files/``), texts one-cell
  ``table-file`` values (column ``text``), histograms ``histogram`` values (``bins``, ``values``);
- the exit code of the last ``finish``: 0 FINISHED, 1 FAILED, 143 KILLED;
- a resumed run is every offline directory of its id, oldest first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wandb_reader import read_finished_run

from tracelet.testing.conformance import BackendConformance, StoredHistogram, StoredImage, StoredRun, decode_png

_STEP_KEY = "tracelet/step"
_STATUS = {0: "FINISHED", 1: "FAILED", 143: "KILLED"}
_OWN_KEYS = frozenset({_STEP_KEY, "_step", "_timestamp", "_runtime"})


class TestWandbBackend(BackendConformance):
    backend = "wandb"
    timestamp_precision = 0.0  # _timestamp is the logged float

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"dir": str(store)}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"run_id": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        run = read_finished_run(store, run_id)
        # A part that has not finished (abandoned at a deadline) has no exit record yet.
        finished = len(run.exit_codes) == len(run.directories)
        stored = StoredRun(run_id=run_id, status=_STATUS[run.exit_codes[-1]] if finished else None)
        config = dict(run.config)
        stored.tags = {key: str(value) for key, value in config.pop("tracelet_tags", {}).items()}
        stored.params = {key: str(value) for key, value in _flatten(config)}
        files = run.files()
        prefix = "artifacts/"
        stored.artifacts = {path.removeprefix(prefix): data for path, data in files.items() if path.startswith(prefix)}
        for row in run.history:
            step = row[_STEP_KEY]
            for key, value in row.items():
                if key in _OWN_KEYS:
                    continue
                kind = value.get("_type") if isinstance(value, dict) else None
                if kind is None:
                    stored.metrics.setdefault(key, []).append((step, value, row["_timestamp"]))
                elif kind == "image-file":
                    pixels, width, height, channels = decode_png(files[value["path"]])
                    stored.images.setdefault(key, []).append(StoredImage(step, width, height, channels, pixels))
                elif kind == "table-file":
                    table = json.loads(files[value["path"]])
                    assert table["columns"] == ["text"], table
                    stored.texts.setdefault(key, []).append((step, table["data"][0][0]))
                elif kind == "histogram":
                    stored.histograms.setdefault(key, []).append(
                        StoredHistogram(step, tuple(value["bins"]), tuple(value["values"]))
                    )
                else:
                    raise AssertionError(f"unexpected W&B value type {kind!r} under {key!r}")
        return stored


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((prefix + key, value))
    return items
