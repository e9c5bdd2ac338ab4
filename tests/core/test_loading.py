"""Plugin discovery and loading through real entry points."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pluggy
import pytest

import tracelet
from tracelet.plugins import discover, plugin_info_of
from tracelet.run import Run
from tracelet.testing import recording_plugin


def _entries() -> dict[str, tracelet.plugins.PluginEntry]:
    return {entry.name: entry for entry in discover()}


def test_entry_points_are_discovered_with_distribution_version_and_kind() -> None:
    entries = _entries()
    good = entries["fixture-good"]
    assert (good.status, good.distribution, good.version, good.kind) == ("loaded", "tracelet-fixtures", "0.0.0", "backend")
    recording = entries["recording"]
    assert (recording.status, recording.distribution, recording.kind) == ("loaded", "tracelet-core", "backend")
    assert entries["fixture-collector"].kind == "collector"
    assert entries["fixture-framework"].kind == "framework"


def test_a_plugin_that_fails_to_import_is_reported_once_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch, tracelet_logs: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TRACELET_DISABLE_PLUGINS")
    entries = {entry.name: entry for entry in discover(refresh=True)}
    broken = entries["fixture-broken"]
    assert broken.status == "failed"
    assert broken.distribution == "tracelet-fixtures"
    assert broken.error == "ModuleNotFoundError: No module named 'tracelet_fixtures_missing_dependency'"
    assert entries["fixture-good"].status == "loaded"
    discover()  # cached: not reported a second time
    reports = [r for r in tracelet_logs.records if "failed to load" in r.getMessage()]
    assert len(reports) == 1
    message = reports[0].getMessage()
    assert "fixture-broken" in message and "tracelet-fixtures" in message and "ModuleNotFoundError" in message


def test_strict_mode_turns_a_load_failure_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACELET_DISABLE_PLUGINS")
    with pytest.raises(tracelet.PluginError, match=r"fixture-broken \(distribution tracelet-fixtures\): ModuleNotFoundError"):
        tracelet.start(backends=["recording"], strict=True)
    assert tracelet.active_run() is None


def test_without_strict_a_load_failure_does_not_stop_the_run(
    monkeypatch: pytest.MonkeyPatch, tracelet_start: Callable[..., Run]
) -> None:
    monkeypatch.delenv("TRACELET_DISABLE_PLUGINS")
    monkeypatch.setenv("TRACELET_STRICT", "0")
    run = tracelet_start(backends=["recording"])
    run.log_metric("loss", 1.0, step=1)
    assert run.flush(5)
    assert run.get_plugin("recording").metric_values("loss") == [(1, 1.0)]  # type: ignore[attr-defined]


def test_disabled_plugins_are_listed_but_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACELET_DISABLE_PLUGINS", "fixture-broken,fixture-good")
    entries = _entries()
    assert entries["fixture-good"].status == "disabled"
    assert entries["fixture-broken"].status == "disabled"
    assert entries["fixture-broken"].error is None


def test_only_listed_plugins_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACELET_PLUGINS", "recording, fixture-slow")
    statuses = {name: entry.status for name, entry in _entries().items()}
    assert statuses["recording"] == statuses["fixture-slow"] == "loaded"
    assert {status for name, status in statuses.items() if name not in ("recording", "fixture-slow")} == {"disabled"}


def test_backends_none_means_every_default_on_backend(
    monkeypatch: pytest.MonkeyPatch, tracelet_start: Callable[..., Run]
) -> None:
    monkeypatch.setenv("TRACELET_PLUGINS", "recording,fixture-good,fixture-raising")
    run = tracelet_start()
    assert run.backends == ("fixture-good",)  # recording and raising are opt-in


def test_unknown_backend_name_lists_installed_ones(tracelet_start: Callable[..., Run]) -> None:
    with pytest.raises(tracelet.ConfigError) as caught:
        tracelet_start(backends=["mlflw"])
    assert str(caught.value) == (
        "unknown backend(s) 'mlflw'; installed backends: "
        "fixture-chaos, fixture-flaky, fixture-good, fixture-hanging, fixture-raising, fixture-slow, recording"
    )


class _Misspelled:
    @tracelet.hookimpl
    def tracelet_plugin_info(self) -> tracelet.PluginInfo:
        return tracelet.PluginInfo(name="misspelled", kind="backend", factory=lambda settings: self)

    @tracelet.hookimpl
    def tracelet_backend_log_metrix(self, metrics: object) -> None:
        """Misspelled: core must refuse it rather than silently never call it."""


def test_a_misspelled_hookimpl_is_an_error() -> None:
    with pytest.raises(pluggy.PluginValidationError, match="tracelet_backend_log_metrix"):
        plugin_info_of(_Misspelled())


def test_a_misspelled_hookimpl_on_the_run_object_is_an_error_in_strict_mode(tracelet_start: Callable[..., Run]) -> None:
    class Plugin:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> tracelet.PluginInfo:
            return tracelet.PluginInfo(
                name="typo", kind="backend", factory=lambda settings: _Misspelled(), enabled_by_default=False
            )

    tracelet.register_plugin(Plugin())
    try:
        with pytest.raises(tracelet.PluginError, match=r"plugin 'typo' could not be created: PluginValidationError"):
            tracelet_start(backends=["typo"])
    finally:
        tracelet.unregister_plugin("typo")


def test_a_bad_declaration_is_refused() -> None:
    class NoInfo:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> str:
            return "not an info"

    with pytest.raises(TypeError, match="returned 'not an info'; expected a tracelet.PluginInfo"):
        plugin_info_of(NoInfo())
    with pytest.raises(ValueError, match="plugin name 'bad name'"):
        tracelet.PluginInfo(name="bad name", kind="backend", factory=object)


def test_registered_plugins_join_the_entry_point_ones(tracelet_start: Callable[..., Run]) -> None:
    tracelet.register_plugin(recording_plugin("second"))
    try:
        assert _entries()["second"].distribution is None
        run = tracelet_start(backends=["recording", "second"])
        run.log_metric("x", 2.0, step=3)
        assert run.flush(5)
        for name in ("recording", "second"):
            assert run.get_plugin(name).metric_values("x") == [(3, 2.0)]  # type: ignore[attr-defined]
    finally:
        tracelet.unregister_plugin("second")
    assert "second" not in _entries()


def test_plugins_command_lists_every_plugin_with_its_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "plugins"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "", "TRACELET_DISABLE_PLUGINS": "fixture-raising"},
    )
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert result.stdout.splitlines()[0].split() == ["NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS"]
    assert lines["fixture-good"].split()[1:] == ["backend", "tracelet-fixtures", "0.0.0", "loaded"]
    assert lines["fixture-raising"].split()[1:] == ["-", "tracelet-fixtures", "0.0.0", "disabled"]
    assert "failed: ModuleNotFoundError: No module named 'tracelet_fixtures_missing_dependency'" in lines["fixture-broken"]
    assert "opt-in" in lines["recording"]
