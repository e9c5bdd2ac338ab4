"""The ``tracelet_param_values`` hook: framework plugins turn foreign config objects into params for ``log_params``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

import tracelet
from tracelet.run import Run
from tracelet.testing import RecordingBackend


class Settings:
    """A foreign config object: not a dict, not even a mapping."""

    def __init__(self, **values: Any) -> None:
        self.values = values


class Converter:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.seen: list[object] = []

    @tracelet.hookimpl
    def tracelet_param_values(self, value: object) -> Mapping[str, Any] | None:
        self.seen.append(value)
        if self.fail:
            raise RuntimeError("cannot convert")
        return {"converted": dict(value.values)} if isinstance(value, Settings) else None


def _plugin(name: str, fail: bool = False) -> object:
    class Plugin:
        @tracelet.hookimpl
        def tracelet_plugin_info(self) -> tracelet.PluginInfo:
            return tracelet.PluginInfo(name=name, kind="framework", factory=lambda _: Converter(fail))

    return Plugin()


@pytest.fixture
def converters() -> Iterator[None]:
    tracelet.register_plugin(_plugin("convert-settings"))
    tracelet.register_plugin(_plugin("convert-failing", fail=True))
    yield
    tracelet.unregister_plugin("convert-settings")
    tracelet.unregister_plugin("convert-failing")


def _stopped(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert run.stop(timeout=30) and isinstance(backend, RecordingBackend)
    return backend


@pytest.mark.usefixtures("converters")
def test_a_foreign_object_is_converted_and_flattened_and_a_dict_is_not_offered(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    # Registered plugins are in every run, in registration order: convert-settings answers first,
    # so convert-failing (which would raise) is never asked: the first mapping wins.
    converter = run.get_plugin("convert-settings")
    assert isinstance(converter, Converter)
    plain = {"lr": 0.1}
    run.log_params(Settings(lr=0.5, model={"depth": 3}))
    run.log_params(plain)
    assert converter.seen[0].values == {"lr": 0.5, "model": {"depth": 3}}  # type: ignore[attr-defined]
    assert len(converter.seen) == 1  # a dict goes straight to flattening: the hot-ish path pays nothing
    assert _stopped(run).params == {"converted.lr": 0.5, "converted.model.depth": 3, "lr": 0.1}


@pytest.mark.usefixtures("converters")
def test_an_error_in_a_converter_is_logged_once_and_the_value_used_as_given(
    tracelet_start: Callable[..., Run], caplog: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(backends=["recording"], strict=False)
    with caplog.at_level(logging.WARNING, logger="tracelet"):
        # A mappingproxy is not a dict: offered; convert-settings declines, convert-failing raises; used as given.
        run.log_params({"a": 1}.items().mapping)
        run.log_params({"a": 1}.items().mapping)
    failures = [record.getMessage() for record in caplog.records if "cannot convert" in record.getMessage()]
    assert len(failures) == 1, failures
    assert _stopped(run).params == {"a": 1}


@pytest.mark.usefixtures("converters")
def test_an_error_in_a_converter_raises_in_strict_mode(tracelet_start: Callable[..., Run]) -> None:
    run = tracelet_start(backends=["recording"])
    with pytest.raises(RuntimeError, match="cannot convert"):
        run.log_params({"a": 1}.items().mapping)
