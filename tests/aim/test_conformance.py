"""tracelet-aim passes the conformance suite (tracelet.testing.conformance) against a real local AIM repository.

The reader (``conftest.read_aim_run``) reads the run back through ``aim.Repo``
and undoes only the mapping docs/plugins/aim.md documents: a name's subset
context, its ``repeat`` contexts (merged back in timestamp order), nested
params, and the exact bins kept beside a non-uniform distribution.
Timestamps are the record's own, stored as float seconds: exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conftest import read_aim_run

from tracelet.testing.conformance import BackendConformance, StoredRun


class TestAimBackend(BackendConformance):
    backend = "aim"
    timestamp_precision = 0.0

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"repo": str(store)}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"run_hash": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_aim_run(store, run_id)
