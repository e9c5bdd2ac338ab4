"""Fixtures for the cross-backend tests (``tox -e all``): every plugin installed, real stores, no mocks.

HOME and every tool's settings point at temporary directories for the whole
session: W&B offline, ClearML offline (its sessions under ``~/.clearml``),
MLflow's telemetry off, git's identity from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("CLEARML_OFFLINE_MODE", "1")
        for variable, directory in {
            "WANDB_DIR": "wandb-dir",
            "WANDB_CACHE_DIR": "wandb-cache",
            "WANDB_CONFIG_DIR": "wandb-config",
            "WANDB_DATA_DIR": "wandb-data",
            "WANDB_ARTIFACT_DIR": "wandb-artifacts",
        }.items():
            (home / directory).mkdir()
            patch.setenv(variable, str(home / directory))
        for variable in (
            "MLFLOW_TRACKING_URI",
            "MLFLOW_RUN_ID",
            "MLFLOW_EXPERIMENT_NAME",
            "WANDB_API_KEY",
            "WANDB_RUN_ID",
            "WANDB_RESUME",
            "WANDB_PROJECT",
            "WANDB_ENTITY",
            "WANDB_BASE_URL",
            "CLEARML_CONFIG_FILE",
            "CLEARML_API_HOST",
            "CLEARML_API_ACCESS_KEY",
            "CLEARML_API_SECRET_KEY",
            "CLEARML_TASK_ID",
            "AIM_REPO_NAME",
        ):
            patch.delenv(variable, raising=False)
        for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
            patch.setenv(variable, "Parity Test")
        for variable in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
            patch.setenv(variable, "parity@example.invalid")
        yield home


@pytest.fixture(autouse=True)
def _no_tracelet_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no ``TRACELET_*`` from the outside but strict mode (tox's)."""
    for variable in list(os.environ):
        if variable.startswith("TRACELET_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("TRACELET_STRICT", "1")
