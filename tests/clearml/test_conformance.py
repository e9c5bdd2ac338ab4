"""tracelet-clearml passes the conformance suite (tracelet.testing.conformance) against real ClearML offline.

The reader (``tests/readers/clearml_reader.py``, shared with tests/all) reads the offline session's ``task.json`` and
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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clearml_reader import read_stored

from tracelet.testing.conformance import BackendConformance, StoredRun


class TestClearmlBackend(BackendConformance):
    backend = "clearml"
    timestamp_precision = 0.0005  # integer milliseconds, rounded to the nearest

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"offline": True}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"task_id": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_stored(run_id)
