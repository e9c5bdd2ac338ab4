"""Collector and framework plugins, through real entry points and a real post-import hook."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterator

import pytest

from tracelet.patching import PatchSet, post_import_hooks
from tracelet.run import Run

COLLECTOR = {"fixture-collector": {"enabled": True, "interval": 0.05}}
FRAMEWORK = {"fixture-framework": {"enabled": True}}


@pytest.fixture
def fresh_toylib() -> Iterator[None]:
    """Make ``tracelet_fixtures.toylib`` not yet imported, so the post-import path runs."""
    import tracelet_fixtures

    def forget() -> None:
        sys.modules.pop("tracelet_fixtures.toylib", None)
        vars(tracelet_fixtures).pop("toylib", None)

    forget()
    yield
    forget()


def test_collector_records_at_start_and_every_interval(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], config=COLLECTOR)
    time.sleep(0.3)
    assert run.stop(timeout=5)
    recording = run.get_plugin("recording")
    collector = run.get_plugin("fixture-collector")
    assert recording.params == {"fixture.run_project": run.project}  # type: ignore[attr-defined]
    assert recording.tags == {"fixture.collected": "yes"}  # type: ignore[attr-defined]
    samples = recording.metric_values("fixture/samples")  # type: ignore[attr-defined]
    assert 3 <= len(samples) <= 8, samples
    assert samples == [(n, float(n)) for n in range(1, len(samples) + 1)]
    assert collector.stopped  # type: ignore[attr-defined]
    assert collector.thread_name == "tracelet-collector-fixture-collector"  # type: ignore[attr-defined]


def test_a_failing_sample_is_logged_once_and_sampling_goes_on(
    tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(
        backends=["recording"], config={"fixture-collector": {**COLLECTOR["fixture-collector"], "fail_sample": True}}
    )
    time.sleep(0.25)
    assert run.stop(timeout=5)
    failures = [r.getMessage() for r in tracelet_logs.records if "collector hook failed" in r.getMessage()]
    assert len(failures) == 1
    assert "hook='tracelet_collect_sample'" in failures[0] and "sensor unavailable" in failures[0]
    assert run.get_plugin("recording").tags == {"fixture.collected": "yes"}  # type: ignore[attr-defined]


def test_collectors_are_opt_in_or_off_by_configuration(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    assert "fixture-collector" not in run.info.plugins
    run.stop()
    run = tracelet_start(backends=["recording"], config=COLLECTOR)
    assert "fixture-collector" in run.info.plugins


def test_a_module_imported_after_start_is_patched_on_import(fresh_toylib: None, tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], config=FRAMEWORK)
    assert post_import_hooks in sys.meta_path
    from tracelet_fixtures import toylib

    assert post_import_hooks not in sys.meta_path  # removed once its last watched module arrived
    assert toylib.__loader__.__class__.__name__ == "SourceFileLoader"  # the module looks untouched
    writer = toylib.Writer()
    assert writer.write("loss", 0.5, 3) == 1
    assert run.flush(5)
    assert run.get_plugin("recording").metric_values("toy/loss") == [(3, 0.5)]  # type: ignore[attr-defined]
    assert writer.rows == [("loss", 0.5, 3)]


def test_a_module_imported_before_start_is_patched_at_start_and_restored_at_stop(tracelet_start: Callable[..., Run]) -> None:
    from tracelet_fixtures import toylib

    original = toylib.Writer.__dict__["write"]
    run = tracelet_start(backends=["recording"], config=FRAMEWORK)
    assert toylib.Writer.__dict__["write"] is not original
    toylib.Writer().write("a", 1.0, 1)
    run.stop()
    assert toylib.Writer.__dict__["write"] is original
    assert run.get_plugin("recording").metric_values("toy/a") == [(1, 1.0)]  # type: ignore[attr-defined]


def test_start_stop_start_never_stacks_wrappers(tracelet_start: Callable[..., Run]) -> None:
    from tracelet_fixtures import toylib

    original = toylib.Writer.__dict__["write"]
    for _ in range(3):
        run = tracelet_start(backends=["recording"], config=FRAMEWORK)
        toylib.Writer().write("a", 1.0, 1)
        run.stop()
        assert run.get_plugin("recording").metric_values("toy/a") == [(1, 1.0)]  # type: ignore[attr-defined]
        assert run.get_plugin("fixture-framework").patch_calls == 1  # type: ignore[attr-defined]
        assert toylib.Writer.__dict__["write"] is original


def test_an_error_from_the_original_reaches_the_user_unchanged(tracelet_start: Callable[..., Run]) -> None:
    from tracelet_fixtures import toylib

    run = tracelet_start(backends=["recording"], config=FRAMEWORK)
    with pytest.raises(ValueError, match="toylib: negative step -1") as caught:
        toylib.Writer().write("a", 1.0, -1)
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert frames[-1].filename.endswith("toylib.py") and frames[-1].name == "write"
    assert run.flush(5)
    assert run.get_plugin("recording").metrics == []  # type: ignore[attr-defined]


def test_a_watched_module_not_imported_leaves_no_hook_behind(fresh_toylib: None, tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"], config=FRAMEWORK)
    assert post_import_hooks in sys.meta_path
    run.stop()
    assert post_import_hooks not in sys.meta_path
    from tracelet_fixtures import toylib

    assert "write" in toylib.Writer.__dict__ and toylib.Writer.write.__module__ == "tracelet_fixtures.toylib"


def test_patch_set_restores_inherited_and_own_attributes() -> None:
    class Base:
        def method(self) -> str:
            return "base"

    class Child(Base):
        def own(self) -> str:
            return "own"

    own = Child.__dict__["own"]
    patches = PatchSet()
    patches.replace(Child, "method", lambda self: "patched")
    patches.replace(Child, "own", lambda self: "patched")
    assert (Child().method(), Child().own()) == ("patched", "patched")
    patches.restore()
    assert "method" not in Child.__dict__ and Child.__dict__["own"] is own
    assert not patches
