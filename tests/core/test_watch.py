"""``tracelet.watch``/``unwatch``: core checks the arguments and hands the model to the framework plugins' hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tracelet
from tracelet.run import Run


class Watcher:
    """A framework plugin that watches dicts (its per-run object), recording how core calls it."""

    def __init__(self, settings: object) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = False

    @tracelet.hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return []

    @tracelet.hookimpl
    def tracelet_watch(self, run: Run, model: object, log: str, every: int) -> bool | None:
        self.calls.append(("watch", model, log, every))
        if self.fail:
            raise RuntimeError("watch broke")
        return True if isinstance(model, dict) else None

    @tracelet.hookimpl
    def tracelet_unwatch(self, run: Run, model: object | None) -> bool | None:
        self.calls.append(("unwatch", model))
        return True


class Declaration:
    @tracelet.hookimpl
    def tracelet_plugin_info(self) -> tracelet.PluginInfo:
        return tracelet.PluginInfo(name="dict-watcher", kind="framework", factory=Watcher)


@pytest.fixture
def watcher_plugin() -> Iterator[None]:
    tracelet.register_plugin(Declaration())
    yield
    tracelet.unregister_plugin("dict-watcher")


def watcher_of(run: Run) -> Watcher:
    watcher = run.get_plugin("dict-watcher")
    assert isinstance(watcher, Watcher)
    return watcher


def test_watch_reaches_the_plugin_that_takes_the_model_and_stop_unwatches(
    watcher_plugin: None, tracelet_start: Callable[..., Run]
) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"])
    model: dict[str, int] = {}
    tracelet.watch(model, log="all", every=7)
    run.watch(model)
    tracelet.unwatch(model)
    watcher = watcher_of(run)
    assert watcher.calls == [("watch", model, "all", 7), ("watch", model, "gradients", 100), ("unwatch", model)]
    assert run.stop(timeout=5)
    assert watcher.calls[-1] == ("unwatch", None)  # stop: every model of the plugin, once
    tracelet.unwatch(model)  # after stop: nothing to do, no call
    run.unwatch()
    assert len(watcher.calls) == 4


def test_a_model_no_plugin_takes_raises_a_clear_error(watcher_plugin: None, tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"])
    with pytest.raises(tracelet.TraceletError) as raised:
        tracelet.watch([1, 2])
    assert str(raised.value) == (
        "no framework plugin in this run can watch a builtins.list; for a torch.nn.Module install tracelet-pytorch "
        "(pip install tracelet-pytorch) and leave it enabled. Plugins in this run besides backends: dict-watcher"
    )
    assert run.stop(timeout=5)
    assert ("unwatch", None) not in watcher_of(run).calls  # it watched nothing


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"log": "weights"}, "watch(log='weights'): log must be one of 'gradients', 'parameters', 'all'"),
        ({"every": 0}, "watch(every=0): every must be a positive int (training steps between histograms)"),
        ({"every": 2.0}, "watch(every=2.0): every must be a positive int (training steps between histograms)"),
        ({"every": True}, "watch(every=True): every must be a positive int (training steps between histograms)"),
    ],
)
def test_bad_arguments_raise_before_any_plugin_is_asked(
    watcher_plugin: None, tracelet_start: Callable[..., Run], arguments: dict[str, Any], message: str
) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"])
    with pytest.raises(ValueError, match="^watch") as raised:
        tracelet.watch({}, **arguments)
    assert str(raised.value) == message
    assert watcher_of(run).calls == []


def test_a_failing_watch_hook_is_logged_not_raised_outside_strict_mode(
    watcher_plugin: None, tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"], strict=False)
    watcher_of(run).fail = True
    tracelet.watch({})
    failures = [r.getMessage() for r in tracelet_logs.records if "watch failed" in r.getMessage()]
    assert len(failures) == 1 and "RuntimeError: watch broke" in failures[0]
    assert run.stop(timeout=5)


def test_a_failing_watch_hook_raises_in_strict_mode(watcher_plugin: None, tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"])
    watcher_of(run).fail = True
    with pytest.raises(RuntimeError, match="watch broke"):
        tracelet.watch({})


def test_watch_needs_a_run_and_unwatch_does_not() -> None:
    with pytest.raises(tracelet.TraceletError, match=r"^no active run: call tracelet.start\(\) before tracelet.watch\(\)$"):
        tracelet.watch({})
    tracelet.unwatch({})
    tracelet.unwatch()


def test_watch_on_a_stopped_run_raises(watcher_plugin: None, tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], plugins=["dict-watcher"])
    assert run.stop(timeout=5)
    with pytest.raises(tracelet.TraceletError, match="has stopped"):
        run.watch({})
