"""Child runs (``run.child()``) as W&B runs grouped under their parent, read back from the offline run files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import finish_run
from wandb_reader import read_finished_run

from tracelet.run import Run
from tracelet_wandb import WandbBackend
from tracelet_wandb.naming import STEP_KEY, TAGS_CONFIG_KEY


def test_a_child_run_is_in_the_group_named_after_its_parent(start_wandb: Callable[..., Run], wandb_dir: Path) -> None:
    parent = start_wandb(run_name="parent display name")
    child = parent.child(name="fold-1", wandb={"job_type": "fold"})
    child.log_metric("val/acc", 0.75, step=3)
    parent.log_metric("cv/mean", 0.5, step=0)
    finish_run(parent)  # stops the open child first
    assert child.stats()["wandb"].state == "ended"

    backend = child.get_plugin("wandb")
    assert isinstance(backend, WandbBackend) and backend.run_id is not None
    stored = read_finished_run(wandb_dir, backend.run_id)
    assert (stored.project, stored.display_name, stored.group, stored.job_type) == ("tests", "fold-1", parent.name, "fold")
    assert stored.config[TAGS_CONFIG_KEY]["tracelet.parent_run_id"] == parent.id
    assert [(row[STEP_KEY], row["val/acc"]) for row in stored.history if "val/acc" in row] == [(3, 0.75)]
    assert stored.exit_codes == [0]

    parent_backend = parent.get_plugin("wandb")
    assert isinstance(parent_backend, WandbBackend) and parent_backend.run_id is not None
    assert parent_backend.run_id != backend.run_id
    parent_stored = read_finished_run(wandb_dir, parent_backend.run_id)
    assert (parent_stored.display_name, parent_stored.group) == ("parent display name", "")
    assert "tracelet.parent_run_id" not in parent_stored.config[TAGS_CONFIG_KEY]
