"""tracelet-wandb passes the conformance suite (tracelet.testing.conformance) against real W&B offline.

The reader (``tests/readers/wandb_reader.py``, shared with tests/all) reads the offline run's ``.wandb`` log and the
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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wandb_reader import read_stored

from tracelet.testing.conformance import BackendConformance, StoredRun


class TestWandbBackend(BackendConformance):
    backend = "wandb"
    timestamp_precision = 0.0  # _timestamp is the logged float

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"dir": str(store)}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"run_id": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_stored(store, run_id)
