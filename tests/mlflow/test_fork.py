"""Forked children start their own runs on the store the parent uses (issue 9, case 12).

A ``multiprocessing`` pool with the fork start method, created while the
parent's run is delivering to the same sqlite store: each child inherits
MLflow's cached tracking store and SQLAlchemy engine (pooled sqlite
connections, module locks). Before the fix about one child in three hung:
its records went to its spool and ``flush()`` returned ``False``. Each task
here starts its own run, logs 200 metrics and stops; every run is read back
complete. Workers run several tasks each, so a worker's second run follows
its first one's ``tracelet.stop()``.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

from mlflow import MlflowClient

import tracelet
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend

TASKS = 24
STEPS = 200


def _child_run(arguments: tuple[str, int]) -> tuple[int, bool, bool, str | None, str | None]:
    """One pool task: its own run on ``uri``; returns (pid, flush and stop results, MLflow run id, last error)."""
    uri, index = arguments
    import os

    # Four processes write to one sqlite file: a start may take over spool_after (0.5 s), and records
    # waiting that long take the spool's detour, which makes flush() say False though they are delivered.
    # That is not what this test is about: records wait in memory here.
    config = {"mlflow": {"tracking_uri": uri}, "spool_after": 30}
    run = tracelet.start(project="fork-pool", name=f"child-{index}", backends=["mlflow"], config=config)
    for step in range(STEPS):
        tracelet.log_metric("loss", index + step / STEPS, step=step)
    flushed = tracelet.flush(timeout=30)  # ~1 s when healthy; a hung child never flushes
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    stopped = tracelet.stop(timeout=30)
    return os.getpid(), flushed, stopped, backend.run_id, run.stats()["mlflow"].last_error


def test_pool_children_deliver_their_own_runs(sqlite_uri: str, tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    parent = tracelet_start(
        project="fork-pool", name="parent", backends=["mlflow"], config={"mlflow": {"tracking_uri": sqlite_uri}}
    )
    for step in range(STEPS):
        parent.log_metric("loss", -1.0, step=step)
    assert parent.flush(timeout=60)  # the parent's engine and store are cached when the pool forks

    # A worker runs two tasks, then is replaced by a new fork: 12 forks, each while the parent writes.
    with multiprocessing.get_context("fork").Pool(3, maxtasksperchild=2) as pool:
        pending = pool.map_async(_child_run, [(sqlite_uri, index) for index in range(TASKS)], chunksize=1)
        step = STEPS
        while not pending.ready():  # and the parent keeps writing to the same store meanwhile
            parent.log_metric("loss", -1.0, step=step)
            step += 1
            if step % 50 == 0:
                parent.flush(timeout=60)
        results = pending.get(timeout=0)
    assert parent.stop(timeout=60)
    parent_history = MlflowClient(sqlite_uri).get_metric_history(parent.get_plugin("mlflow").run_id, "loss")  # type: ignore[attr-defined]
    assert sorted(point.step for point in parent_history) == list(range(step))

    assert [(flushed, stopped, error) for _, flushed, stopped, _, error in results] == [(True, True, None)] * TASKS
    assert len({pid for pid, *_ in results}) < TASKS  # workers ran several runs each, one after another
    client = MlflowClient(sqlite_uri)
    for index, (_, _, _, run_id, _) in enumerate(results):
        assert run_id is not None
        stored = client.get_run(run_id)
        assert (stored.info.run_name, stored.info.status) == (f"child-{index}", "FINISHED")
        history = client.get_metric_history(run_id, "loss")
        assert sorted((point.step, point.value) for point in history) == [(step, index + step / STEPS) for step in range(STEPS)]
    # Nothing was left behind for replay by any child.
    spool = tmp_path / ".tracelet" / "spool"
    assert not spool.exists() or not any(spool.rglob("*.seg"))
