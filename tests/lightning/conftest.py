"""Shared fixtures of the lightning tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tracelet_plugins() -> list[str]:
    """The plugins the ``tracelet_start`` fixture loads besides the recording backend."""
    return ["lightning", "pytorch", "mlflow"]
