"""tracelet-aim passes the conformance suite (tracelet.testing.conformance): a local AIM repository, and AIM's tracking server.

The reader (``conftest.read_aim_run``) reads the run back through ``aim.Repo``
and undoes only the mapping docs/plugins/aim.md documents: a name's subset
context, its ``repeat`` contexts (merged back in timestamp order), nested
params, and the exact bins kept beside a non-uniform distribution.
Timestamps are the record's own, stored as float seconds: exact.

The same cases run through ``aim server`` (``aim://127.0.0.1:PORT``), read back
from the server's repository; artifacts go to a ``file://`` artifacts URI, as a
tracking server stores none itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import AimServer, read_aim_run

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


class TestAimServer(BackendConformance):
    backend = "aim"
    timestamp_precision = 0.0

    @pytest.fixture(autouse=True)
    def _server(self, aim_server: AimServer) -> None:
        self.server = aim_server

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"repo": self.server.uri, "artifacts_uri": f"file://{store}/artifacts"}

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any]:
        return {"run_hash": run_id}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        return read_aim_run(self.server.repo, run_id, index=True)
