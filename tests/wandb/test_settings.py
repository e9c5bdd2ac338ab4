"""The W&B backend's settings, validated when a run is configured (no wandb import)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracelet_wandb import WandbSettings


def test_defaults_leave_w_and_b_its_own_resolution() -> None:
    settings = WandbSettings()
    assert (settings.project, settings.entity, settings.mode, settings.dir, settings.run_id) == (None, None, None, None, None)
    assert (settings.system_metrics, settings.console, settings.artifact_path) == (False, False, "artifacts")
    assert (settings.init_timeout, settings.finish_timeout) == (None, None)


def test_a_relative_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert WandbSettings(dir="runs").dir == os.path.join(str(tmp_path), "runs")


def test_mode_must_be_one_of_w_and_b_s() -> None:
    with pytest.raises(ValueError, match=r"^mode 'bogus' must be one of online, offline, disabled \(or unset"):
        WandbSettings(mode="bogus")


@pytest.mark.parametrize("path", ["", "/abs", "../out", "a\\b"])
def test_artifact_path_stays_inside_the_run_s_files(path: str) -> None:
    with pytest.raises(ValueError, match="must be a non-empty relative POSIX path inside the run's files"):
        WandbSettings(artifact_path=path)


@pytest.mark.parametrize("field", ["init_timeout", "finish_timeout"])
def test_timeouts_are_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}' must be > 0"):
        WandbSettings(**{field: 0})
