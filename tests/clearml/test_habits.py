"""ClearML's habits, tamed: automation off and the process's objects left as they were, the in-process
reporter, the script's own task, and TensorBoard scalars reaching ClearML exactly once. Real clearml offline."""

from __future__ import annotations

import builtins
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clearml_reader import read_session

from tracelet.run import Run
from tracelet_clearml import ClearmlBackend


def _objects() -> dict[str, Any]:
    import torch

    return {
        "import": builtins.__import__,
        "stdout": sys.stdout,
        "stderr": sys.stderr,
        "torch.save": torch.save,
        "torch.load": torch.load,
    }


def _start(tracelet_start: Callable[..., Run], **options: Any) -> tuple[Run, ClearmlBackend]:
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"offline": True}}, **options)
    assert run.flush(60)  # the backend has started (Task.init ran on its worker)
    backend = run.get_plugin("clearml")
    assert isinstance(backend, ClearmlBackend)
    return run, backend


def test_objects_clearml_patches_are_the_originals_after_start_and_stop(tracelet_start: Callable[..., Run]) -> None:
    before = _objects()
    run, backend = _start(tracelet_start)
    assert backend.task_id is not None
    assert _objects() == before
    assert all(_objects()[key] is value for key, value in before.items())
    assert sys.excepthook.__module__ == "tracelet.lifecycle"  # core's crash handler, not ClearML's ExitHooks
    run.log_metric("x", 1.0, step=0)
    assert run.stop(timeout=60)
    assert all(_objects()[key] is value for key, value in before.items())
    assert sys.excepthook.__module__ == "tracelet.lifecycle"


def test_the_reporter_runs_in_process(tracelet_start: Callable[..., Run]) -> None:
    from clearml import Task

    run, _ = _start(tracelet_start)
    config = os.environ["CLEARML_CONFIG_FILE"]  # no clearml.conf of the user's: the backend's private one
    assert Path(config).read_text() == "sdk.development.report_use_subprocess: false\n"
    assert bool(Task._report_subprocess_enabled) is False
    assert run.stop(timeout=60)


def test_the_scripts_own_task_is_used_and_left_open(tracelet_start: Callable[..., Run]) -> None:
    from clearml import Task

    own = Task.init(
        project_name="mine",
        task_name="own",
        reuse_last_task_id=False,
        auto_connect_frameworks=False,
        auto_connect_arg_parser=False,
        auto_connect_streams=False,
        auto_resource_monitoring=False,
    )
    try:
        run, backend = _start(tracelet_start)
        assert (backend.task_id, backend.attached) == (own.id, True)
        run.log_metric("train/loss", 0.5, step=7)
        assert run.stop(timeout=60)
        assert Task.current_task() is own  # not closed by Tracelet
        own.get_logger().report_scalar("mine", "mine", 1.0, iteration=1)
    finally:
        own.close()
    scalars = [
        (e["metric"], e["variant"], e["iter"], e["value"]) for e in read_session(own.id).events_of("training_stats_scalar")
    ]
    assert scalars == [("train", "loss", 7, 0.5), ("mine", "mine", 1, 1.0)]


@pytest.mark.tracelet_plugins("pytorch")
def test_summary_writer_scalar_reaches_clearml_exactly_once(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    run, backend = _start(tracelet_start)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "tb")) as writer:
        writer.add_scalar("train/loss", 0.25, 3)
        writer.add_scalar("acc", 0.75, 4)
    assert run.stop(timeout=60)
    assert backend.task_id is not None
    scalars = [
        (e["metric"], e["variant"], e["iter"], e["value"])
        for e in read_session(backend.task_id).events_of("training_stats_scalar")
    ]
    assert scalars == [("train", "loss", 3, 0.25), ("acc", "acc", 4, 0.75)]


def test_discovery_imports_no_clearml() -> None:
    import subprocess

    code = (
        "import sys, tracelet.plugins, tracelet_clearml; tracelet_clearml.tracelet_plugin_info(); "
        "print(sorted(name for name in sys.modules if name == 'clearml' or name.startswith('clearml.')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
