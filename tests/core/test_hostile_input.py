"""Hostile input: one test per row of the table in docs/reliability.md ("Hostile input").

Every case runs outside strict mode (what users get): nothing raises on the
caller's thread; a refused value is dropped, counted in ``stats().rejected``
and warned about once per (kind, name); a value core changes is counted in
``stats().normalised`` and warned about once; a valid value reaches the
backend unchanged. Strict mode (what tests and CI use) raises on refusal.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tracelet
from tracelet.run import Run
from tracelet.spool import decode_record, encode_record
from tracelet.testing import RecordingBackend

HUGE = 10**400  # beyond float range
NOW = 1_764_000_000.0  # 2025-11-24, seconds since the epoch


class Unprintable:
    """An object whose ``str()`` raises, like a half-initialised proxy."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = object.__repr__


class Opaque:
    """An object with no JSON form; its ``str()`` is what a backend gets."""

    def __str__(self) -> str:
        return "<opaque>"


@pytest.fixture
def lenient(tracelet_start: Callable[..., Run]) -> Run:
    """A non-strict run delivering to the recording backend: what a training script gets by default."""
    return tracelet_start(backends=["recording"], strict=False)


def _recording(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def _warnings(logs: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in logs.records if r.levelno == logging.WARNING and word in r.getMessage()]


# --- metric values -----------------------------------------------------------------------------------

KEPT_VALUES: list[tuple[str, Any, float]] = [
    ("nan", math.nan, math.nan),
    ("+inf", math.inf, math.inf),
    ("-inf", -math.inf, -math.inf),
    ("bool True", True, 1.0),
    ("bool False", False, 0.0),
    ("int", 3, 3.0),
    ("big int within float range", 2**70, float(2**70)),
    ("numpy float32 scalar", np.float32(0.5), 0.5),
    ("numpy one-element array", np.array([[2.5]]), 2.5),
]


@pytest.mark.parametrize(("case", "value", "expected"), KEPT_VALUES, ids=[row[0] for row in KEPT_VALUES])
def test_a_real_number_reaches_the_backend_as_a_float(
    lenient: Run, tracelet_logs: pytest.LogCaptureFixture, case: str, value: Any, expected: float
) -> None:
    lenient.log_metric("m", value, step=1)
    assert lenient.flush(5)
    [metric] = _recording(lenient).metrics
    assert type(metric.value) is float
    assert metric.value == expected or (math.isnan(expected) and math.isnan(metric.value))
    assert lenient.stats().rejected == {} and lenient.stats().normalised == {}
    assert _warnings(tracelet_logs, "value") == []


REFUSED_VALUES: list[tuple[str, Any]] = [
    ("None", None),
    ("str", "0.5"),
    ("complex", 1 + 2j),
    ("numpy complex", np.complex128(1)),
    ("numpy array of several elements", np.array([1.0, 2.0, 3.0])),
    ("huge int", HUGE),
    ("list", [1.0]),
]


@pytest.mark.parametrize(("case", "value"), REFUSED_VALUES, ids=[row[0] for row in REFUSED_VALUES])
def test_a_value_that_is_not_one_real_number_is_dropped_counted_and_warned_once(
    lenient: Run, tracelet_logs: pytest.LogCaptureFixture, case: str, value: Any
) -> None:
    for _ in range(3):
        lenient.log_metric("m", value, step=1)  # never raises outside strict mode
    lenient.log_metric("m", 1.0, step=2)
    assert lenient.flush(5)
    assert _recording(lenient).metric_values("m") == [(2, 1.0)]
    assert lenient.stats().rejected == {"metric:m": 3}
    [warning] = _warnings(tracelet_logs, "rejected")
    assert "kind='metric' name='m'" in warning


@pytest.mark.parametrize(("case", "value"), REFUSED_VALUES, ids=[row[0] for row in REFUSED_VALUES])
def test_a_refused_value_raises_in_strict_mode(tracelet_run: Run, case: str, value: Any) -> None:
    with pytest.raises(TypeError, match="tracelet: metric 'm' rejected"):
        tracelet_run.log_metric("m", value)


# --- names -------------------------------------------------------------------------------------------

KEPT_NAMES = [
    ("spaces", "train loss (smoothed)"),
    ("slashes", "train/loss/epoch"),
    ("dot-dot", "../../etc/hosts"),
    ("unicode", "损失/λ/🚀"),
    ("over 250 chars", "n" * 300),
]


@pytest.mark.parametrize(("case", "name"), KEPT_NAMES, ids=[row[0] for row in KEPT_NAMES])
def test_a_non_empty_string_name_reaches_backends_and_the_spool_unchanged(lenient: Run, case: str, name: str) -> None:
    lenient.log_metric(name, 1.0, step=0)
    lenient.log_params({name: 1})
    lenient.set_tags({name: "t"})
    lenient.log_text(name, "hello")
    assert lenient.flush(5)
    recording = _recording(lenient)
    assert recording.metric_values(name) == [(0, 1.0)]
    assert recording.params == {name: 1} and recording.tags == {name: "t"}
    assert [text.name for text in recording.of_type(tracelet.Text)] == [name]
    assert lenient.stats().rejected == {} and lenient.stats().normalised == {}
    # Backend rules (MLflow's key charset and 250-char limit) are each plugin's; the spool keeps names whole.
    for record in recording.records:
        assert decode_record(encode_record(record)) == record


@pytest.mark.parametrize("strict", [False, True], ids=["router check", "strict caller check"])
def test_a_non_string_name_becomes_its_str_counted_and_warned_once(
    tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture, strict: bool
) -> None:
    run = tracelet_start(backends=["recording"], strict=strict)
    for step in range(3):
        run.log_metric(7, float(step), step=step)  # type: ignore[arg-type]
    run.log_params({8: "x"})
    run.set_tags({9: "y"})
    assert run.flush(5)
    recording = _recording(run)
    assert recording.metric_values("7") == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert recording.params == {"8": "x"} and recording.tags == {"9": "y"}
    assert run.stats().normalised == {"metric:7": 3, "param:8": 1, "tag:9": 1}
    assert len(_warnings(tracelet_logs, "normalised")) == 3


@pytest.mark.parametrize("name", ["", None], ids=["empty", "None"])
def test_an_empty_or_none_name_is_dropped_counted_and_warned_once(
    lenient: Run, tracelet_logs: pytest.LogCaptureFixture, name: Any
) -> None:
    for _ in range(2):
        lenient.log_metric(name, 1.0)  # checked by the router, off the caller's thread
        lenient.log_params({name: 1})
        lenient.set_tags({name: "v"})
        lenient.log_text(name, "t")
        lenient.log_record(tracelet.Tag(name, "from a plugin"))
    lenient.log_metric("ok", 1.0, step=0)
    assert lenient.flush(5)
    assert [record.name for record in _recording(lenient).records] == ["ok"]
    key = f"{name}"  # "" or "None"
    assert lenient.stats().rejected == {f"metric:{key}": 2, f"param:{key}": 2, f"tag:{key}": 4, f"text:{key}": 2}
    assert len(_warnings(tracelet_logs, "rejected")) == 4  # once per kind


def test_an_empty_name_raises_in_strict_mode(tracelet_run: Run) -> None:
    with pytest.raises(TypeError, match="tracelet: metric '' rejected: a name must be a non-empty string"):
        tracelet_run.log_metric("", 1.0)
    with pytest.raises(TypeError, match="tracelet: param '' rejected"):
        tracelet_run.log_params({"": 1})


# --- params --------------------------------------------------------------------------------------------


def test_a_param_over_6000_chars_reaches_backends_whole(lenient: Run) -> None:
    value = "x" * 7000
    lenient.log_params({"long": value})
    assert lenient.flush(5)
    assert _recording(lenient).params == {"long": value}  # the MLflow plugin truncates to its own limit
    assert lenient.stats().rejected == {}


def test_nested_dicts_and_lists_are_flattened_and_json(lenient: Run) -> None:
    lenient.log_params(
        {
            "model": {"encoder": {"layers": 12, "act": "gelu"}, "empty": {}},
            "schedule": [1, {"warmup": [2, 3]}, (4.5, None), {"z", "a"}],
            "names": ["λ", "ü"],
        }
    )
    assert lenient.flush(5)
    assert _recording(lenient).params == {
        "model.encoder.layers": 12,
        "model.encoder.act": "gelu",
        "model.empty": "{}",
        "schedule": '[1, {"warmup": [2, 3]}, [4.5, null], ["a", "z"]]',
        "names": '["λ", "ü"]',
    }


def test_an_unserialisable_object_becomes_its_str_and_one_whose_str_raises_is_dropped(
    lenient: Run, tracelet_logs: pytest.LogCaptureFixture
) -> None:
    lenient.log_params({"opaque": Opaque(), "listed": [Opaque()], "broken": Unprintable(), "after": 1})
    lenient.set_tags({"broken": Unprintable(), "fine": "yes"})
    assert lenient.flush(5)
    recording = _recording(lenient)
    assert recording.params == {"opaque": "<opaque>", "listed": '["<opaque>"]', "after": 1}
    assert recording.tags == {"fine": "yes"}
    assert lenient.stats().rejected == {"param:broken": 1, "tag:broken": 1}
    assert len(_warnings(tracelet_logs, "rejected")) == 2


def test_the_same_param_logged_twice_reaches_backends_twice_in_order(lenient: Run) -> None:
    lenient.log_params({"lr": 0.1})
    lenient.log_metric("loss", 1.0, step=0)
    lenient.log_params({"lr": 0.01})
    assert lenient.flush(5)
    recording = _recording(lenient)
    assert recording.records == [tracelet.Param("lr", 0.1), recording.metrics[0], tracelet.Param("lr", 0.01)]
    assert lenient.stats().rejected == {} and lenient.stats().normalised == {}


# --- steps ---------------------------------------------------------------------------------------------


def test_negative_and_decreasing_steps_pass_unchanged_in_order(lenient: Run) -> None:
    for step in [5, 3, -1, -7, 0]:
        lenient.log_metric("m", float(step), step=step)
    assert lenient.flush(5)
    assert _recording(lenient).metric_values("m") == [(5, 5.0), (3, 3.0), (-1, -1.0), (-7, -7.0), (0, 0.0)]
    assert lenient.stats().rejected == {} and lenient.stats().normalised == {}


def test_a_missing_step_is_the_last_explicit_one(lenient: Run) -> None:
    lenient.log_metric("m", 0.0)
    lenient.log_metric("m", 1.0, step=10)
    lenient.log_metric("m", 2.0)
    lenient.step = 20
    lenient.log_metric("m", 3.0)
    assert lenient.flush(5)
    assert _recording(lenient).metric_values("m") == [(0, 0.0), (10, 1.0), (10, 2.0), (20, 3.0)]


def test_a_whole_float_step_becomes_an_int_and_a_fractional_one_drops_the_value(
    lenient: Run, tracelet_logs: pytest.LogCaptureFixture
) -> None:
    lenient.log_metric("m", 1.0, step=4.0)  # type: ignore[arg-type]
    lenient.log_metric("m", 2.0, step=5.0)  # type: ignore[arg-type]
    lenient.log_metric("m", 3.0, step=5.5)  # type: ignore[arg-type]
    lenient.log_metric("m", 4.0, step=np.int64(6))  # type: ignore[arg-type]
    assert lenient.flush(5)
    assert _recording(lenient).metric_values("m") == [(4, 1.0), (5, 2.0), (6, 4.0)]
    assert all(type(metric.step) is int for metric in _recording(lenient).metrics)
    assert lenient.stats().normalised == {"step:m": 2}
    assert lenient.stats().rejected == {"step:m": 1}
    assert len(_warnings(tracelet_logs, "normalised")) == 1 and len(_warnings(tracelet_logs, "rejected")) == 1


# --- timestamps --------------------------------------------------------------------------------------

TIMESTAMPS: list[tuple[str, Any, float, bool]] = [
    ("seconds (float)", NOW, NOW, False),
    ("seconds (int)", int(NOW), NOW, False),
    ("milliseconds", NOW * 1e3, NOW, True),
    ("microseconds", int(NOW * 1e6), NOW, True),
    ("nanoseconds (time.time_ns)", int(NOW) * 10**9, NOW, True),
]


@pytest.mark.parametrize(("case", "timestamp", "expected", "changed"), TIMESTAMPS, ids=[row[0] for row in TIMESTAMPS])
def test_timestamps_above_1e11_are_taken_as_ms_us_or_ns(
    lenient: Run, case: str, timestamp: Any, expected: float, changed: bool
) -> None:
    lenient.log_metric("m", 1.0, step=0, timestamp=timestamp)
    assert lenient.flush(5)
    [metric] = _recording(lenient).metrics
    assert metric.timestamp == pytest.approx(expected, abs=1e-3)
    assert lenient.stats().normalised == ({"timestamp:m": 1} if changed else {})


@pytest.mark.parametrize("timestamp", ["yesterday", math.nan, -1.0, math.inf], ids=["str", "nan", "negative", "inf"])
def test_an_unusable_timestamp_is_replaced_by_now_and_the_value_kept(lenient: Run, timestamp: Any) -> None:
    before = time.time()
    lenient.log_metric("m", 1.0, step=0, timestamp=timestamp)
    lenient.log_metric("m", 2.0, step=1, timestamp=timestamp)
    assert lenient.flush(5)
    metrics = _recording(lenient).metrics
    assert [metric.value for metric in metrics] == [1.0, 2.0]
    assert all(before <= metric.timestamp <= time.time() for metric in metrics)
    assert lenient.stats().normalised == {"timestamp:m": 2}


def test_no_hostile_call_raises_outside_strict_mode(lenient: Run, tmp_path: Path) -> None:
    """Every row above at once, in one loop, as a training script would hit them."""
    for value in [value for _, value in REFUSED_VALUES] + [value for _, value, _ in KEPT_VALUES]:
        for name in ["", None, 7, "a/b", "..", "λ", "n" * 300]:
            lenient.log_metric(name, value, step=-1)  # type: ignore[arg-type]
            lenient.log_metric(name, value, step=2.5)  # type: ignore[arg-type]
            lenient.log_metric(name, value, timestamp="soon")  # type: ignore[arg-type]
            lenient.log_params({name: {"x": Unprintable(), "y": [Opaque()]}})
            lenient.set_tags({name: Unprintable()})
            lenient.log_text(name, "text", step=1.5)  # type: ignore[arg-type]
    assert lenient.flush(10)
    assert lenient.stats().rejected
