"""The public API, function by function, read back from the recording backend."""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

import tracelet
from tracelet.media import encode_png
from tracelet.run import Run
from tracelet.testing import RecordingBackend


def _recording(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def test_start_returns_a_run_that_is_active(tracelet_run: Run) -> None:
    assert tracelet.active_run() is tracelet_run
    assert len(tracelet_run.id) == 32
    assert tracelet_run.backends == ("recording",)
    assert tracelet_run.project == Path.cwd().name
    assert tracelet_run.name.startswith("run-")


def test_log_metric_keeps_values_steps_and_timestamps(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    before = time.time()
    tracelet.log_metric("loss", 0.5, step=0)
    tracelet.log_metric("loss", 0.25, step=1, timestamp=1234.5)
    tracelet.log_metric("loss", 0.125)  # no step: the last explicit one
    tracelet_run.step = 10
    tracelet.log_metric("acc", 0.9)
    assert tracelet.flush(5)
    metrics = tracelet_recording.metrics
    assert [(m.name, m.value, m.step) for m in metrics] == [
        ("loss", 0.5, 0),
        ("loss", 0.25, 1),
        ("loss", 0.125, 1),
        ("acc", 0.9, 10),
    ]
    assert metrics[1].timestamp == 1234.5
    assert before <= metrics[0].timestamp <= time.time()


def test_log_metrics_logs_a_mapping_at_one_step(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    tracelet.log_metrics({"a": 1, "b": 2.5}, step=7)
    assert tracelet.flush(5)
    assert [(m.name, m.value, m.step) for m in tracelet_recording.metrics] == [("a", 1.0, 7), ("b", 2.5, 7)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3.0),
        (True, 1.0),
        (np.float32(0.5), 0.5),
        (np.int64(7), 7.0),
        (np.bool_(True), 1.0),
        (np.array(2.5), 2.5),
        (np.array([4.0]), 4.0),
        (Fraction(1, 4), 0.25),
    ],
)
def test_metric_value_types(tracelet_run: Run, tracelet_recording: RecordingBackend, value: object, expected: float) -> None:
    tracelet.log_metric("m", value, step=1)
    assert tracelet.flush(5)
    assert tracelet_recording.metric_values("m") == [(1, expected)]
    assert type(tracelet_recording.metrics[0].value) is float


def test_nan_and_infinities_are_values(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    for step, value in enumerate([math.nan, math.inf, -math.inf]):
        tracelet.log_metric("m", value, step=step)
    assert tracelet.flush(5)
    values = [m.value for m in tracelet_recording.metrics]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf]


@pytest.mark.parametrize("value", ["0.5", None, 1 + 2j, np.array([1.0, 2.0]), np.complex64(1), [1.0], 10**400])
def test_a_non_number_is_a_type_error_in_strict_mode(tracelet_run: Run, value: object) -> None:
    with pytest.raises(TypeError, match="tracelet: metric 'm' rejected: a .* is not a single real number"):
        tracelet.log_metric("m", value)
    assert tracelet_run.stats().rejected == {"metric:m": 1}


def test_a_non_number_is_dropped_warned_once_and_counted(
    monkeypatch: pytest.MonkeyPatch, tracelet_start: Callable[..., Run], tracelet_logs: pytest.LogCaptureFixture
) -> None:
    run = tracelet_start(backends=["recording"], strict=False)
    for _ in range(3):
        tracelet.log_metric("m", "high")
    tracelet.log_metric("m", 1.0, step=2)
    assert run.flush(5)
    assert _recording(run).metric_values("m") == [(2, 1.0)]
    assert run.stats().rejected == {"metric:m": 3}
    warnings = [r for r in tracelet_logs.records if r.levelno == logging.WARNING and "rejected" in r.getMessage()]
    assert len(warnings) == 1
    assert "kind='metric' name='m'" in warnings[0].getMessage()


def test_steps_must_be_integers(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    tracelet.log_metric("m", 1.0, step=np.int32(4))  # type: ignore[arg-type]
    tracelet.log_metric("m", 2.0, step=5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="step 5.5 is not an integer"):
        tracelet.log_metric("m", 3.0, step=5.5)  # type: ignore[arg-type]
    assert tracelet.flush(5)
    assert tracelet_recording.metric_values("m") == [(4, 1.0), (5, 2.0)]
    assert all(type(m.step) is int for m in tracelet_recording.metrics)


def test_log_params_flattens_nesting_and_normalises_values(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "<opaque>"

    tracelet.log_params(
        {"optim": {"lr": 0.1, "betas": (0.9, 0.99), "sched": {"name": "cos"}}, "seed": 1, "path": None, "obj": Opaque()}
    )
    assert tracelet.flush(5)
    assert tracelet_recording.params == {
        "optim.lr": 0.1,
        "optim.betas": "[0.9, 0.99]",
        "optim.sched.name": "cos",
        "seed": 1,
        "path": None,
        "obj": "<opaque>",
    }


def test_set_tags_stringifies(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    tracelet.set_tags({"team": "vision", "attempt": 3})
    assert tracelet.flush(5)
    assert tracelet_recording.tags == {"team": "vision", "attempt": "3"}


def test_log_artifact_records_absolute_paths_and_names(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    Path("model.pt").write_bytes(b"weights")
    Path("outputs").mkdir()
    tracelet.log_artifact("model.pt")
    tracelet.log_artifact("outputs/", name="run-outputs")
    assert tracelet.flush(5)
    artifacts = tracelet_recording.of_type(tracelet.Artifact)
    assert artifacts == [
        tracelet.Artifact(str(Path.cwd() / "model.pt"), "model.pt"),
        tracelet.Artifact(str(Path.cwd() / "outputs"), "run-outputs"),
    ]


def test_log_image_from_numpy_pil_and_chw(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    hwc = np.zeros((2, 3, 3), dtype=np.uint8)
    hwc[0, 0] = (255, 0, 0)
    tracelet.log_image("hwc", hwc, step=1)
    tracelet.log_image("float-gray", np.full((4, 5), 0.5), step=2)
    tracelet.log_image("chw", np.moveaxis(hwc, -1, 0).copy(), step=3)
    tracelet.log_image("pil", PILImage.fromarray(hwc), step=4)
    assert tracelet.flush(5)
    images = {image.name: image for image in tracelet_recording.of_type(tracelet.Image)}
    assert (images["hwc"].width, images["hwc"].height, images["hwc"].channels, images["hwc"].step) == (3, 2, 3, 1)
    assert images["hwc"].pixels == hwc.tobytes()
    assert images["chw"].pixels == hwc.tobytes()
    assert images["pil"].pixels == hwc.tobytes()
    assert images["float-gray"].pixels == bytes([128] * 20)
    decoded = np.asarray(PILImage.open(__import__("io").BytesIO(encode_png(images["hwc"]))))
    assert (decoded == hwc).all()


def test_log_image_copies_the_pixels(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    array = np.zeros((2, 2), dtype=np.uint8)
    tracelet.log_image("img", array)
    array[:] = 255  # training overwrites its buffer
    assert tracelet.flush(5)
    assert tracelet_recording.of_type(tracelet.Image)[0].pixels == bytes(4)


def test_a_bad_image_is_rejected(tracelet_run: Run) -> None:
    with pytest.raises(TypeError, match=r"image 'img' rejected: an image must be HW, HWC or CHW .* got shape \(2, 2, 2, 2\)"):
        tracelet.log_image("img", np.zeros((2, 2, 2, 2)))


def test_log_text(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    tracelet.log_text("sample", "hello", step=3)
    assert tracelet.flush(5)
    (text,) = tracelet_recording.of_type(tracelet.Text)
    assert (text.name, text.text, text.step) == ("sample", "hello", 3)


def test_log_histogram_of_arrays_and_lists(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    values = np.array([0.0, 1.0, 1.0, 2.0, np.nan])
    tracelet.log_histogram("weights", values, step=2, bins=2)
    tracelet.log_histogram("list", [1, 2, 3, 4], step=3, bins=3)
    assert tracelet.flush(5)
    weights, listed = tracelet_recording.of_type(tracelet.Histogram)
    assert (weights.edges, weights.counts, weights.count, weights.step) == ((0.0, 1.0, 2.0), (1.0, 3.0), 4, 2)
    assert (weights.minimum, weights.maximum, weights.total, weights.sum_squares) == (0.0, 2.0, 4.0, 6.0)
    assert listed.counts == (1.0, 1.0, 2.0) and listed.edges[0] == 1.0 and listed.edges[-1] == 4.0


def test_log_figure_renders_png(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    tracelet.log_figure("curve", figure, step=5)
    plt.close(figure)
    assert tracelet.flush(5)
    (logged,) = tracelet_recording.of_type(tracelet.Figure)
    assert logged.png.startswith(b"\x89PNG\r\n\x1a\n") and logged.step == 5
    assert PILImage.open(__import__("io").BytesIO(logged.png)).size == (640, 480)


def test_start_while_active_finishes_the_previous_run(tracelet_start: Callable[..., Run]) -> None:
    first = tracelet_start(backends=["recording"])
    first.log_metric("x", 1.0)
    second = tracelet_start(backends=["recording"])
    assert tracelet.active_run() is second
    assert _recording(first).status is tracelet.RunStatus.FINISHED
    assert _recording(first).metric_values("x") == [(0, 1.0)]
    assert second.id != first.id


def test_without_an_active_run_logging_is_an_error() -> None:
    with pytest.raises(tracelet.TraceletError, match=r"no active run: call tracelet.start\(\) before tracelet.log_metric\(\)"):
        tracelet.log_metric("x", 1.0)
    with pytest.raises(tracelet.TraceletError, match=r"before tracelet.log_params\(\)"):
        tracelet.log_params({"a": 1})
    assert tracelet.flush() is True
    assert tracelet.stop() is True


def test_a_stopped_run_refuses_records(tracelet_run: Run) -> None:
    assert tracelet.stop() is True
    assert tracelet.active_run() is None
    with pytest.raises(tracelet.TraceletError, match="has stopped; call tracelet.start"):
        tracelet_run.log_metric("x", 1.0)
    assert tracelet_run.stop() is True  # idempotent


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (None, tracelet.RunStatus.FINISHED),
        (ValueError, tracelet.RunStatus.FAILED),
        (KeyboardInterrupt, tracelet.RunStatus.KILLED),
    ],
)
def test_run_as_context_manager_sets_the_status(
    tracelet_start: Callable[..., Run], error: type[BaseException] | None, status: tracelet.RunStatus
) -> None:
    run = tracelet_start(backends=["recording"])
    if error is None:
        with run:
            pass
    else:
        with pytest.raises(error), run:
            raise error
    assert _recording(run).status is status


def test_stop_status_must_be_known(tracelet_run: Run) -> None:
    with pytest.raises(ValueError, match="'DONE' is not a valid RunStatus"):
        tracelet.stop("DONE")
    assert tracelet.stop("KILLED") is True
    assert _recording(tracelet_run).status is tracelet.RunStatus.KILLED


def test_stats_per_backend(tracelet_run: Run, tracelet_recording: RecordingBackend) -> None:
    for step in range(5):
        tracelet.log_metric("x", float(step), step=step)
    tracelet.log_params({"a": 1})
    assert tracelet.flush(5)
    stats = tracelet_run.stats()["recording"]
    assert (stats.state, stats.delivered, stats.failed, stats.dropped, stats.queued, stats.batches) == ("running", 6, 0, 0, 0, 2)
    assert stats.run_id == f"recording-{tracelet_run.id}"
    assert stats.last_error is None
    assert stats.latency is not None and 0 <= stats.latency < 5


def test_the_exit_handler_stops_a_run_the_script_never_stopped(tmp_path: Path) -> None:
    script = """
import atexit, tracelet

def report():  # registered before tracelet's handler, so it runs after it (atexit is LIFO)
    backend = run.get_plugin("fixture-slow")
    print(backend.status.value, len(backend.metrics), tracelet.active_run())

atexit.register(report)
run = tracelet.start(backends=["fixture-slow"])
for step in range(500):
    tracelet.log_metric("loss", 1.0 / (step + 1), step=step)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path, timeout=60)
    assert result.stdout.split() == ["FINISHED", "500", "None"]
