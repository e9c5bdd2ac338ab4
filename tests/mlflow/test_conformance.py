"""tracelet-mlflow passes the conformance suite (tracelet.testing.conformance) against a real sqlite store.

The reader (``tests/readers/mlflow_reader.py``, shared with tests/all) reads the MLflow run back
through ``MlflowClient`` and the run's artifacts, and undoes only what docs/plugins/mlflow.md documents as MLflow's
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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from mlflow_reader import read_mlflow_run

from tracelet.testing.conformance import BackendConformance, StoredRun


class TestMlflowBackend(BackendConformance):
    backend = "mlflow"
    timestamp_precision = 0.0005  # integer milliseconds, rounded to the nearest

    @pytest.fixture(autouse=True)
    def _shared_store(self, sqlite_uri: str) -> None:
        # MLflow takes seconds to create a sqlite store's tables: every test shares the session's store,
        # and keeps apart by its own experiment (the project: the test's working directory's name).
        self.tracking_uri = sqlite_uri

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"tracking_uri": self.tracking_uri}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"run_id": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_mlflow_run(self.tracking_uri, run_id)
