"""Configuration: precedence, typing from every source, and every error path."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import tracelet
from tracelet.config import CoreSettings, resolve_config
from tracelet.plugins import loaded_plugins
from tracelet.run import Run
from tracelet.testing import RecordingSettings


def _resolve(arguments: dict[str, object] | None = None, *, environ: dict[str, str] | None = None, directory: Path):
    return resolve_config(loaded_plugins(), arguments or {}, environ=environ or {}, directory=directory)


def test_defaults(tmp_path: Path) -> None:
    resolved = _resolve(directory=tmp_path)
    assert resolved.core == CoreSettings()
    assert resolved.plugin_settings["recording"] == RecordingSettings()
    assert resolved.values["queue_size"][1].description == "default"


def test_precedence_default_pyproject_tracelet_toml_environment_arguments(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.tracelet]\nqueue_size = 10\nbatch_linger = 0.5\nstop_timeout = 7\nproject = 'from-pyproject'\n"
        "[tool.tracelet.recording]\nstart_delay = 1.0\nbatch_delay = 2.0\n"
    )
    (tmp_path / "tracelet.toml").write_text("queue_size = 20\nbatch_linger = 0.25\n[recording]\nbatch_delay = 3.0\n")
    environ = {"TRACELET_QUEUE_SIZE": "30", "TRACELET_RECORDING_START_DELAY": "4.5"}
    resolved = _resolve({"queue_size": 40}, environ=environ, directory=tmp_path)
    assert resolved.core.queue_size == 40
    assert resolved.core.batch_linger == 0.25
    assert resolved.core.stop_timeout == 7.0
    assert resolved.core.project == "from-pyproject"
    assert resolved.plugin_settings["recording"] == RecordingSettings(start_delay=4.5, batch_delay=3.0)
    sources = {key: source.description for key, (_, source) in resolved.values.items()}
    assert sources["queue_size"] == "start()"
    assert sources["recording.start_delay"] == "TRACELET_RECORDING_START_DELAY (environment)"
    assert sources["recording.batch_delay"] == f"{tmp_path / 'tracelet.toml'} [recording]"
    assert sources["stop_timeout"] == f"{tmp_path / 'pyproject.toml'} [tool.tracelet]"


def test_a_plugin_key_from_pyproject_names_its_own_table(tmp_path: Path) -> None:
    """`tracelet config` labelled [tool.tracelet.<plugin>] keys as coming from [tool.tracelet]."""
    (tmp_path / "pyproject.toml").write_text("[tool.tracelet]\nqueue_size = 10\n[tool.tracelet.recording]\nbatch_delay = 2.0\n")
    resolved = _resolve(directory=tmp_path)
    sources = {key: source.description for key, (_, source) in resolved.values.items()}
    assert sources["recording.batch_delay"] == f"{tmp_path / 'pyproject.toml'} [tool.tracelet.recording]"
    assert sources["queue_size"] == f"{tmp_path / 'pyproject.toml'} [tool.tracelet]"


def test_plugin_keys_as_nested_tables_or_dotted_keys(tmp_path: Path) -> None:
    nested = _resolve({"recording": {"batch_delay": 0.5}}, directory=tmp_path)
    dotted = _resolve({"recording.batch_delay": 0.5}, directory=tmp_path)
    assert nested.plugin_settings["recording"] == dotted.plugin_settings["recording"] == RecordingSettings(batch_delay=0.5)


@pytest.mark.parametrize(
    ("variable", "value", "key", "expected"),
    [
        ("TRACELET_STRICT", "yes", "strict", True),
        ("TRACELET_STRICT", "0", "strict", False),
        ("TRACELET_BACKENDS", "a, b", "backends", ("a", "b")),
        ("TRACELET_BACKENDS", "none", "backends", None),
        ("TRACELET_STOP_TIMEOUT", "2.5", "stop_timeout", 2.5),
        ("TRACELET_FIXTURE_GOOD_ENABLED", "false", "fixture-good.enabled", False),
    ],
)
def test_environment_strings_are_converted(tmp_path: Path, variable: str, value: str, key: str, expected: object) -> None:
    assert _resolve(environ={variable: value}, directory=tmp_path).values[key][0] == expected


def test_a_bad_environment_value_names_the_variable_and_the_type(tmp_path: Path) -> None:
    with pytest.raises(tracelet.ConfigError) as caught:
        _resolve(environ={"TRACELET_QUEUE_SIZE": "lots"}, directory=tmp_path)
    message = str(caught.value)
    assert message.startswith("invalid configuration value for 'queue_size' from TRACELET_QUEUE_SIZE (environment): 'lots'")
    assert "not a valid int" in message


def test_a_bad_file_value_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "tracelet.toml").write_text("batch_linger = 'soon'\n")
    with pytest.raises(tracelet.ConfigError, match=r"'batch_linger' from .*tracelet.toml: 'soon' is not a valid float"):
        _resolve(directory=tmp_path)


def test_no_silent_coercion_from_files_or_arguments(tmp_path: Path) -> None:
    with pytest.raises(tracelet.ConfigError, match=r"'queue_size' from start\(\): 1.5 is not a valid int"):
        _resolve({"queue_size": 1.5}, directory=tmp_path)
    with pytest.raises(tracelet.ConfigError, match=r"'strict' from start\(\): 'yes' is not a valid bool"):
        _resolve({"strict": "yes"}, directory=tmp_path)


def test_a_validator_failure_names_the_key_and_source(tmp_path: Path) -> None:
    with pytest.raises(
        tracelet.ConfigError, match=r"recording.*batch_delay=-1.0 from TRACELET_RECORDING_BATCH_DELAY \(environment\)"
    ):
        _resolve(environ={"TRACELET_RECORDING_BATCH_DELAY": "-1"}, directory=tmp_path)
    with pytest.raises(tracelet.ConfigError, match=r"invalid configuration for tracelet: .*queue_size=0 from start\(\)"):
        _resolve({"queue_size": 0}, directory=tmp_path)


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "tracelet.toml").write_text("queue_size = = 3\n")
    with pytest.raises(tracelet.ConfigError, match="tracelet.toml is not valid TOML"):
        _resolve(directory=tmp_path)


def test_unknown_keys_are_errors_in_strict_mode(tmp_path: Path) -> None:
    (tmp_path / "tracelet.toml").write_text("queue_sise = 3\n")
    with pytest.raises(tracelet.ConfigError) as caught:
        _resolve({"strict": True, "recording": {"delay": 1}}, environ={"TRACELET_FIXTURE_GOOD_SPEED": "1"}, directory=tmp_path)
    message = str(caught.value)
    assert message.startswith("unknown configuration keys: ")
    assert f"'queue_sise' from {tmp_path / 'tracelet.toml'}" in message
    assert "'recording.delay' from start()" in message
    assert "'fixture-good.speed' from TRACELET_FIXTURE_GOOD_SPEED (environment)" in message
    assert "known keys are: " in message and "queue_size" in message


def test_unknown_keys_are_warnings_otherwise(tmp_path: Path, tracelet_logs: pytest.LogCaptureFixture) -> None:
    resolved = _resolve({"queue_sise": 3}, directory=tmp_path)
    assert resolved.core.queue_size == CoreSettings().queue_size
    assert any("unknown configuration keys: 'queue_sise' from start()" in r.getMessage() for r in tracelet_logs.records)


def test_keys_of_disabled_plugins_are_ignored(tmp_path: Path) -> None:
    resolved = resolve_config(
        loaded_plugins(),
        {"strict": True, "fixture-broken": {"anything": 1}},
        ignored_plugins=frozenset({"fixture-broken"}),
        environ={"TRACELET_FIXTURE_BROKEN_URL": "x"},
        directory=tmp_path,
    )
    assert "fixture-broken.anything" not in resolved.values


def test_start_reports_a_bad_value_before_starting_anything(tracelet_start: Callable[..., Run], monkeypatch) -> None:
    monkeypatch.setenv("TRACELET_STOP_TIMEOUT", "soon")
    with pytest.raises(tracelet.ConfigError, match="TRACELET_STOP_TIMEOUT"):
        tracelet_start(backends=["recording"])
    assert tracelet.active_run() is None


def test_enabled_false_turns_a_default_backend_off(monkeypatch, tracelet_start: Callable[..., Run]) -> None:
    monkeypatch.setenv("TRACELET_PLUGINS", "recording,fixture-good")
    monkeypatch.setenv("TRACELET_FIXTURE_GOOD_ENABLED", "false")
    assert tracelet_start().backends == ()


def test_start_arguments_override_everything(tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tracelet.toml").write_text("project = 'file'\nname = 'file-run'\n")
    monkeypatch.setenv("TRACELET_NAME", "env-run")
    run = tracelet_start(project="mine", backends=["recording"])
    assert (run.project, run.name) == ("mine", "env-run")


def test_config_command_shows_values_and_sources(tmp_path: Path) -> None:
    (tmp_path / "tracelet.toml").write_text("queue_size = 123\n")
    result = subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "config"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"TRACELET_DISABLE_PLUGINS": "fixture-broken", "TRACELET_RECORDING_BATCH_DELAY": "0.5"},
    )
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["queue_size"] == ["123", str(tmp_path / "tracelet.toml")]
    assert rows["recording.batch_delay"] == ["0.5", "TRACELET_RECORDING_BATCH_DELAY (environment)"]
    assert rows["stop_timeout"] == ["30.0", "default"]


def test_config_command_reports_a_bad_value_with_exit_status_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tracelet.cli", "config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"TRACELET_DISABLE_PLUGINS": "fixture-broken", "TRACELET_QUEUE_SIZE": "x"},
    )
    assert result.returncode == 2
    assert "error: invalid configuration value for 'queue_size' from TRACELET_QUEUE_SIZE (environment)" in result.stderr
