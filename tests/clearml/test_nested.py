"""Child runs (``run.child()``) as ClearML child tasks, read back from the offline sessions (real clearml offline)."""

from __future__ import annotations

from collections.abc import Callable

from clearml_reader import read_session

from tracelet.run import Run
from tracelet_clearml import ClearmlBackend


def test_a_child_run_is_a_task_whose_parent_is_the_parents_task(tracelet_start: Callable[..., Run]) -> None:
    parent = tracelet_start(project="cv", name="sweep", backends=["clearml"], config={"clearml": {"offline": True}})
    parent.log_metric("best/acc", 0.5, step=0)
    child = parent.child(name="fold-1")
    child.log_metric("val/acc", 0.75, step=3)
    open_child = parent.child(name="fold-2")  # left open: the parent's stop() ends it first
    open_child.log_metric("val/acc", 0.25, step=3)
    assert child.stop(timeout=60), child.stats()["clearml"]
    assert parent.stop(timeout=60), parent.stats()["clearml"]
    assert open_child.stats()["clearml"].state == "ended"

    tasks = {}
    for run in (parent, child, open_child):
        backend = run.get_plugin("clearml")
        assert isinstance(backend, ClearmlBackend)
        assert backend.task_id is not None and not backend.attached
        tasks[run.name] = read_session(backend.task_id)
    parent_task = tasks["sweep"].task
    assert parent_task.get("parent") is None
    for name, value in (("fold-1", 0.75), ("fold-2", 0.25)):
        session = tasks[name]
        assert (session.task["name"], session.task["project_name"], session.task["parent"]) == (name, "cv", parent_task["id"])
        assert session.properties["tracelet.parent_run_id"] == parent.id
        assert session.properties["tracelet.status"] == "FINISHED"
        scalars = [(e["metric"], e["variant"], e["iter"], e["value"]) for e in session.events_of("training_stats_scalar")]
        assert scalars == [("val", "acc", 3, value)]
    assert [(e["metric"], e["iter"]) for e in tasks["sweep"].events_of("training_stats_scalar")] == [("best", 0)]
