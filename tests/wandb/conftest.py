"""Fixtures for the W&B backend's tests: real wandb offline (the wandb-core service), no mocks.

Every test runs with ``WANDB_MODE=offline``, ``WANDB_SILENT=true`` and HOME,
``WANDB_DIR``, ``WANDB_CACHE_DIR``, ``WANDB_CONFIG_DIR``, ``WANDB_DATA_DIR``
in temporary directories, so nothing is read from or written to the real
home, and nothing reaches the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from wandb_reader import OfflineRun, read_finished_run

import tracelet
from tracelet.run import Run
from tracelet_wandb import WandbBackend


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        for variable, directory in {
            "WANDB_DIR": "wandb-dir",
            "WANDB_CACHE_DIR": "cache",
            "WANDB_CONFIG_DIR": "config",
            "WANDB_DATA_DIR": "data",
            "WANDB_ARTIFACT_DIR": "artifacts",
        }.items():
            (home / directory).mkdir()
            patch.setenv(variable, str(home / directory))
        for variable in ("WANDB_API_KEY", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
            patch.delenv(variable, raising=False)
        yield home


@pytest.fixture
def tracelet_plugins() -> Sequence[str]:
    return ["wandb"]


@pytest.fixture
def wandb_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "wandb-store"
    directory.mkdir()
    return directory


@pytest.fixture
def start_wandb(tracelet_start: Callable[..., Run], wandb_dir: Path) -> Callable[..., Run]:
    """Start an isolated run delivering to W&B only (offline, ``dir`` = ``wandb_dir``); W&B settings as keywords."""

    def start(**wandb_settings: Any) -> Run:
        options = {"dir": str(wandb_dir), **wandb_settings}
        return tracelet_start(project="tests", backends=["wandb"], config={"wandb": options})

    return start


def finish_run(run: Run, status: tracelet.RunStatus | str = tracelet.RunStatus.FINISHED) -> WandbBackend:
    """Stop the run, assert all of it reached W&B, return its backend."""
    backend = run.get_plugin("wandb")
    assert isinstance(backend, WandbBackend)
    assert run.stop(status, timeout=60), run.stats()["wandb"]
    assert backend.run_id is not None
    return backend


@pytest.fixture
def finish_and_read(wandb_dir: Path) -> Callable[..., tuple[WandbBackend, OfflineRun]]:
    """``finish_and_read(run, status=FINISHED)``: stop the run and read its W&B run back from ``wandb_dir``."""

    def finish(run: Run, status: tracelet.RunStatus | str = tracelet.RunStatus.FINISHED) -> tuple[WandbBackend, OfflineRun]:
        backend = finish_run(run, status)
        assert backend.run_id is not None
        return backend, read_finished_run(wandb_dir, backend.run_id)

    return finish
