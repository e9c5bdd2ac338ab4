"""Fixtures for the ClearML backend's tests: real clearml offline, no mocks.

No ClearML server can run here, so every test runs in ClearML's offline mode
(``CLEARML_OFFLINE_MODE=1``) with HOME in a temporary directory: ClearML's
cache and offline sessions (``~/.clearml``) go there, no ``clearml.conf`` is
found (so the backend writes its private one), and nothing reaches the network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("CLEARML_OFFLINE_MODE", "1")
        for variable in (
            "CLEARML_CONFIG_FILE",
            "CLEARML_API_HOST",
            "CLEARML_API_ACCESS_KEY",
            "CLEARML_API_SECRET_KEY",
            "CLEARML_TASK_ID",
        ):
            patch.delenv(variable, raising=False)
        yield home


@pytest.fixture
def tracelet_plugins() -> Sequence[str]:
    return ["clearml"]
