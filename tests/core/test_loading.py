"""Plugin discovery and loading through real entry points."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest

import tracelet
import tracelet.testing
from tracelet.plugins import describe_failure, discover, plugin_info_of
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
    assert broken.error == (
        "ModuleNotFoundError: No module named 'tracelet_fixtures_missing_dependency' "
        f"(at {Path(broken_module_file()).resolve()}:3)"
    )
    assert isinstance(broken.exception, ModuleNotFoundError)
    assert entries["fixture-good"].status == "loaded"
    discover()  # cached: not reported a second time
    reports = [r for r in tracelet_logs.records if "failed to load" in r.getMessage()]
    assert len(reports) == 1
    message = reports[0].getMessage()
    assert "fixture-broken" in message and "tracelet-fixtures" in message and "ModuleNotFoundError" in message
    assert "was skipped" not in message  # strict mode raises right after it: the log must not say otherwise
    tracebacks = [r for r in tracelet_logs.records if r.levelname == "DEBUG" and "traceback of the plugin" in r.getMessage()]
    assert len(tracebacks) == 1
    assert "Traceback (most recent call last)" in tracebacks[0].getMessage()
    assert 'broken.py", line 3' in tracebacks[0].getMessage()


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
    monkeypatch.setenv("TRACELET_PLUGINS", "recording,fixture-broken")  # the fixture would not even import it
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


@pytest.mark.tracelet_plugins(isolate=False)
def test_unknown_backend_name_lists_installed_ones(tracelet_start: Callable[..., Run]) -> None:
    with pytest.raises(tracelet.ConfigError) as caught:
        tracelet_start(backends=["mlflw"])
    assert str(caught.value) == (
        "unknown backend(s) 'mlflw'; installed backends: "
        "fixture-chaos, fixture-flaky, fixture-good, fixture-hanging, fixture-picky, fixture-raising, fixture-slow, recording"
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


def broken_module_file() -> str:
    import importlib.util

    spec = importlib.util.find_spec("tracelet_fixtures")
    assert spec is not None and spec.submodule_search_locations
    return str(Path(next(iter(spec.submodule_search_locations))) / "broken.py")


def _installed_plugin(root: Path, name: str, files: dict[str, str]) -> dict[str, str]:
    """A real installed distribution on ``root`` (dist-info + entry point), and the environment to find it."""
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(textwrap.dedent(text))
    package = next(iter(files)).split("/")[0]
    info = root / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[tracelet]\n{name} = {package}\n")
    return {"PATH": "", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]), "TRACELET_PLUGINS": name}


def test_a_plugin_whose_import_raises_names_the_error_and_the_line_of_the_failing_import(tmp_path: Path) -> None:
    files = {
        "kaboom/__init__.py": "from kaboom import settings  # the failing import\n",
        "kaboom/settings.py": "DEFAULTS = {}\nDEFAULTS['missing_key']\n",
    }
    env = _installed_plugin(tmp_path, "kaboom", files)
    result = subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "plugins"], capture_output=True, text=True, check=True, env=env
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("kaboom"))
    assert line.endswith(f"failed: KeyError: 'missing_key' (at {tmp_path / 'kaboom' / 'settings.py'}:2)"), line


def test_describe_failure_prefers_the_plugins_own_frame_over_the_library_it_called(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "outside_library.py").write_text("def load():\n    raise OSError('no device')\n")
    (tmp_path / "inside_plugin.py").write_text("import outside_library\n\noutside_library.load()\n")
    try:
        with pytest.raises(OSError, match="no device") as caught:
            __import__("inside_plugin")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("outside_library", None)
    assert describe_failure(caught.value, "inside_plugin") == f"OSError: no device (at {tmp_path / 'inside_plugin.py'}:3)"
    assert describe_failure(caught.value, "elsewhere") == f"OSError: no device (at {tmp_path / 'outside_library.py'}:2)"


class _MisspelledBackend:
    def __init__(self, settings: object) -> None:
        pass

    @tracelet.hookimpl
    def tracelet_backend_log_metrix(self, metrics: object) -> None:
        """Misspelled on the per-run class: found from the class, without calling the factory."""


def test_a_misspelled_hookimpl_on_the_factory_class_is_found_at_discovery(tmp_path: Path) -> None:
    class Plugin:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> tracelet.PluginInfo:
            return tracelet.PluginInfo(name="typo-class", kind="backend", factory=_MisspelledBackend)

    with pytest.raises(pluggy.PluginValidationError, match=r"_MisspelledBackend.tracelet_backend_log_metrix is marked"):
        tracelet.register_plugin(Plugin())
    files = {
        "typo_class/__init__.py": """
            import tracelet

            class Backend:
                @tracelet.hookimpl
                def tracelet_backend_log_metrix(self, metrics):
                    pass

            @tracelet.hookimpl
            def tracelet_plugin_info():
                return tracelet.PluginInfo(name="typo-class", kind="backend", factory=Backend)
        """
    }
    env = _installed_plugin(tmp_path, "typo-class", files)
    command = [sys.executable, "-m", "tracelet.cli", "plugins"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    line = next(line for line in result.stdout.splitlines() if line.startswith("typo-class"))
    assert "failed: PluginValidationError" in line and "typo_class.Backend.tracelet_backend_log_metrix" in line, line


def test_a_collector_returning_one_record_gets_one_clear_warning_and_the_record_arrives(
    tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture
) -> None:
    class OneMetric:
        @tracelet.hookimpl
        def tracelet_collect_start(self) -> tracelet.Metric:
            return tracelet.Metric("cpu", 12.5, 0, 1.0e9)

        @tracelet.hookimpl
        def tracelet_collect_interval(self) -> float:
            return 0.01

        @tracelet.hookimpl
        def tracelet_collect_sample(self) -> tracelet.Metric:
            return tracelet.Metric("cpu", 13.5, 1, 1.0e9)

    class Plugin:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> tracelet.PluginInfo:
            return tracelet.PluginInfo(name="one-metric", kind="collector", factory=lambda settings: OneMetric())

    tracelet.register_plugin(Plugin())
    try:
        run = tracelet_start(backends=["recording"])
        recording = run.get_plugin("recording")
        assert isinstance(recording, tracelet.testing.RecordingBackend)
        deadline = time.monotonic() + 10
        while len(recording.metric_values("cpu")) < 3 and time.monotonic() < deadline:
            run.flush(1)
        run.stop()
    finally:
        tracelet.unregister_plugin("one-metric")
    values = recording.metric_values("cpu")
    assert values[:2] == [(0, 12.5), (1, 13.5)] and len(values) >= 3
    warnings = [r.getMessage() for r in tracelet_logs.records if r.levelname == "WARNING"]
    assert [w for w in warnings if "one-metric" in w] == [
        next(w for w in warnings if w.startswith("collector returned a single Metric; return a list"))
    ]
