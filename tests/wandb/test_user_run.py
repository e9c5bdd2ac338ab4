"""A script's own ``wandb.init()`` / ``wandb.log()`` next to Tracelet's W&B run: each keeps its own run and data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wandb
from conftest import finish_run
from wandb_reader import OfflineRun, read_finished_run

from tracelet.run import Run


@pytest.fixture
def user_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "user-wandb"
    directory.mkdir()
    yield directory
    if wandb.run is not None:  # a failed test leaves nothing open for the next
        wandb.run.finish()


def _user_values(stored: OfflineRun) -> list[float]:
    return [row["user"] for row in stored.history if "user" in row]


def _own_keys(stored: OfflineRun) -> set[str]:
    return {key for row in stored.history for key in row if not key.startswith("_")}


def test_a_user_run_started_before_during_and_after_ours_keeps_its_own_data(
    start_wandb: Callable[..., Run], wandb_dir: Path, user_dir: Path
) -> None:
    user = wandb.init(project="mine", dir=str(user_dir), config={"user_param": 1})
    wandb.log({"user": 1.0})
    run = start_wandb()
    for step in range(50):
        run.log_metric("ours", float(step), step)
    run.log_params({"our_param": 2})
    assert run.flush(timeout=60)
    assert wandb.run is user  # Tracelet's run is not the global one
    wandb.log({"user": 2.0})
    later = wandb.init(project="mine", dir=str(user_dir), reinit="create_new")  # a second run of the user's, during ours
    later.log({"user": 10.0})
    later.finish()
    backend = finish_run(run)
    assert backend.run_id is not None
    ours = read_finished_run(wandb_dir, backend.run_id)
    # W&B's service is shared: the user's run is still open, so stop() leaves it running and the user logs on.
    wandb.log({"user": 3.0})
    assert wandb.run is user
    user.finish()
    after = wandb.init(project="mine", dir=str(user_dir))  # and after ours: a fresh run of the user's
    after.log({"user": 4.0})
    after.finish()

    assert [(row["tracelet/step"], row["ours"]) for row in ours.history if "ours" in row] == [(s, float(s)) for s in range(50)]
    assert _own_keys(ours) == {"tracelet/step", "ours"}
    assert "user_param" not in ours.config
    assert ours.config["our_param"] == 2
    stored_user = read_finished_run(user_dir, user.id)
    assert _user_values(stored_user) == [1.0, 2.0, 3.0]
    assert _own_keys(stored_user) == {"user"}
    assert stored_user.config == {"user_param": 1}
    assert _user_values(read_finished_run(user_dir, later.id)) == [10.0]
    assert _user_values(read_finished_run(user_dir, after.id)) == [4.0]
    assert backend.run_id not in {user.id, later.id, after.id}


def test_a_user_run_started_during_ours_outlives_our_stop(
    start_wandb: Callable[..., Run], wandb_dir: Path, user_dir: Path
) -> None:
    run = start_wandb()  # Tracelet's backend starts W&B's service here
    run.log_metric("ours", 1.0, 0)
    assert run.flush(timeout=60)
    user = wandb.init(project="mine", dir=str(user_dir))
    wandb.log({"user": 1.0})
    backend = finish_run(run)
    assert backend.run_id is not None
    ours = read_finished_run(wandb_dir, backend.run_id)
    # The user's run still needs the service this backend started: stop() leaves it running.
    wandb.log({"user": 2.0})
    user.finish()
    assert _user_values(read_finished_run(user_dir, user.id)) == [1.0, 2.0]
    assert _own_keys(ours) == {"tracelet/step", "ours"}
