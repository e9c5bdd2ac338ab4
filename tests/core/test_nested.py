"""Nested runs: ``run.child()`` and ``tracelet.start(parent=...)`` with real threads and the recording backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.errors import TraceletError
from tracelet.info import BackendRunRef, ParentRef
from tracelet.replay import replay
from tracelet.run import Run
from tracelet.testing import RecordingBackend

Start = Callable[..., Run]


def recording(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def test_a_child_in_a_with_block_is_the_active_run_then_the_parent_again(tracelet_start: Start) -> None:
    parent = tracelet_start(project="cv", name="sweep", backends=["recording"])
    with parent.child(name="fold-1") as fold:
        assert tracelet.active_run() is fold
        tracelet.log_metric("val/acc", 0.75, step=3)
        tracelet.log_params({"fold": 1})
    assert tracelet.active_run() is parent
    tracelet.log_metric("cv/mean", 0.5, step=0)
    assert parent.flush(timeout=10)

    child = recording(fold)
    assert child.status == tracelet.RunStatus.FINISHED  # leaving the block stopped the child
    assert child.metric_values("val/acc") == [(3, 0.75)]
    assert child.params == {"fold": 1}
    assert child.tags["tracelet.parent_run_id"] == parent.id
    assert recording(parent).metric_values("cv/mean") == [(0, 0.5)]
    assert recording(parent).metric_values("val/acc") == []
    assert "tracelet.parent_run_id" not in recording(parent).tags
    assert (fold.name, fold.project, fold.parent, fold.backends) == ("fold-1", "cv", parent, ("recording",))
    assert child.run is not None
    assert child.run.parent == ParentRef(parent.id, "sweep", BackendRunRef(f"recording-{parent.id}"))
    assert child.run.parent.run_id == f"recording-{parent.id}"
    assert parent.children == ()


def test_default_child_names_count_the_parents_children(tracelet_start: Start) -> None:
    parent = tracelet_start(name="search", backends=["recording"])
    names = [parent.child().name, parent.child(name="custom").name, parent.child().name]
    assert names == ["search-1", "custom", "search-3"]
    assert [child.name for child in parent.children] == names


def test_a_childs_backend_starts_once_the_parents_run_exists(tracelet_start: Start) -> None:
    # The parent's backend takes 1 s to start; the child, created at once, must be handed the parent's run.
    parent = tracelet_start(backends=["recording"], config={"recording": {"start_delay": 1.0}})
    child = parent.child(recording={"start_delay": 0.0})
    child.log_metric("x", 1.0, step=0)
    assert child.flush(timeout=20)
    info = recording(child).run
    assert info is not None and info.parent is not None
    assert info.parent.run_id == f"recording-{parent.id}"
    assert recording(child).settings.start_delay == 0.0  # the child's options on top of the parent's configuration
    assert recording(parent).settings.start_delay == 1.0


def test_parent_stop_stops_its_open_children_first_with_its_status(tracelet_start: Start) -> None:
    parent = tracelet_start(backends=["recording"])
    first, second = parent.child(), parent.child()
    for index, child in enumerate((first, second)):
        child.log_metric("loss", float(index), step=index)
    assert parent.children == (first, second)
    assert parent.stop(tracelet.RunStatus.KILLED, timeout=20)
    for index, child in enumerate((first, second)):
        backend = recording(child)
        assert backend.ended.is_set()
        assert backend.status == tracelet.RunStatus.KILLED
        assert backend.metric_values("loss") == [(index, float(index))]
    assert recording(parent).status == tracelet.RunStatus.KILLED
    assert parent.children == ()
    with pytest.raises(TraceletError, match=r"has stopped"):
        first.log_metric("late", 1.0)


def test_a_stopped_run_has_no_children(tracelet_start: Start) -> None:
    parent = tracelet_start(name="done", backends=["recording"])
    parent.stop(timeout=10)
    with pytest.raises(TraceletError, match=rf"run 'done' \({parent.id}\) has stopped"):
        parent.child()


def test_children_on_three_threads_at_once_each_active_on_its_own_thread(tracelet_start: Start) -> None:
    parent = tracelet_start(backends=["recording"])
    together = threading.Barrier(3)
    children: dict[int, Run] = {}
    problems: list[str] = []

    def fold(index: int) -> None:
        with parent.child(name=f"fold-{index}") as child:
            children[index] = child
            together.wait(timeout=20)  # the three children are open at once
            for step in range(200):
                tracelet.log_metric("val/acc", float(index), step=step)
            if tracelet.active_run() is not child:
                problems.append(f"thread {index}: active run {tracelet.active_run()!r}")
            together.wait(timeout=20)

    threads = [threading.Thread(target=fold, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert problems == []
    assert tracelet.active_run() is parent
    for index, child in children.items():
        assert recording(child).metric_values("val/acc") == [(step, float(index)) for step in range(200)]
        assert recording(child).status == tracelet.RunStatus.FINISHED
    assert recording(parent).metric_values("val/acc") == []


def test_a_child_object_logs_from_any_thread(tracelet_start: Start) -> None:
    parent = tracelet_start(backends=["recording"])
    child = parent.child()
    worker = threading.Thread(target=lambda: [child.log_metric("x", 1.0, step=step) for step in range(5)])
    worker.start()
    worker.join(timeout=20)
    assert tracelet.active_run() is parent  # not entered: a child only becomes active in a `with`
    assert child.stop(timeout=10)
    assert recording(child).metric_values("x") == [(step, 1.0) for step in range(5)]


def test_start_with_a_parent_keeps_the_parent_running(tracelet_start: Start) -> None:
    parent = tracelet_start(project="pipeline", backends=["recording"])
    stage = tracelet.start(name="stage-2", parent=parent)
    assert tracelet.active_run() is stage
    tracelet.log_metric("rows", 10.0, step=0)
    assert tracelet.stop(timeout=10)  # the module-level stop() ends the active run: the stage
    assert tracelet.active_run() is parent
    parent.log_metric("done", 1.0, step=0)
    assert parent.stop(timeout=10)
    assert (stage.name, stage.project) == ("stage-2", "pipeline")
    assert recording(stage).metric_values("rows") == [(0, 10.0)]
    assert recording(parent).metric_values("done") == [(0, 1.0)]
    assert recording(parent).metric_values("rows") == []


def test_a_child_left_in_the_spool_is_replayed_under_its_parent(
    tracelet_start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = {"fixture-flaky": {"fail_first": 0}}
    parent = tracelet_start(backends=["fixture-flaky"], config=flaky, retry_attempts=1, breaker_cooldown=600.0)
    child = parent.child(name="late", **{"fixture-flaky": {"fail_start": 10**9}})  # its backend never starts
    child.log_metric("x", 1.0, step=0)
    assert parent.flush(timeout=10)
    assert not child.stop(timeout=1)
    assert parent.stop(timeout=10)

    monkeypatch.setenv("TRACELET_FIXTURE_FLAKY_FAIL_FIRST", "0")
    (result,) = replay(tmp_path / ".tracelet" / "spool", progress=None)
    assert (result.run_id, result.ok, result.sent) == (child.id, True, 2)  # the parent tag and the metric
    backend = result.plugin
    assert isinstance(backend, RecordingBackend) and backend.run is not None and backend.run.parent is not None
    assert backend.run.parent.run_id == f"recording-{parent.id}"  # the replayed child is linked natively too
    assert backend.metric_values("x") == [(0, 1.0)]


def test_starting_a_new_run_ends_the_active_one_with_its_open_children_promptly(tracelet_start: Start) -> None:
    first = tracelet_start(backends=["recording"], stop_timeout=20.0)
    children = [first.child(), first.child()]  # two: stopped on threads of their own
    began = time.monotonic()
    second = tracelet_start(backends=["recording"])
    assert time.monotonic() - began < 10.0  # not the 20 s deadline: nothing waits on a lock start() holds
    assert tracelet.active_run() is second
    for child in children:
        assert recording(child).status == tracelet.RunStatus.FINISHED
    assert first.children == ()
