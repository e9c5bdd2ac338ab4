"""ClearML's server limits, applied before an event would be lost on them (real clearml offline, read back).

Each limit is one where ClearML's server drops the event without the script hearing of it: a title or
series longer than an Elasticsearch keyword holds, a finite value beyond 32-bit float, a debug sample over
the file server's upload limit. The backend fits the record, counts it and warns once per name.
"""

from __future__ import annotations

import io
import logging
import random
from collections.abc import Callable

import pytest
from clearml_reader import read_session
from PIL import Image as PilImage

from tracelet.plugin import Image
from tracelet.run import Run
from tracelet_clearml import ClearmlBackend
from tracelet_clearml.backend import FLOAT32_MAX, MAX_NAME_BYTES, fit_name


def _finish(run: Run) -> ClearmlBackend:
    backend = run.get_plugin("clearml")
    assert isinstance(backend, ClearmlBackend)
    assert run.stop(timeout=60), run.stats()["clearml"]
    return backend


def _warnings(caplog: pytest.LogCaptureFixture, rule: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and rule in r.getMessage()]


def test_fit_name_keeps_names_within_the_limit_apart() -> None:
    assert fit_name("loss") == "loss"
    exact = "é" * (MAX_NAME_BYTES // 2)  # 32,766 bytes: fits as it is
    assert fit_name(exact) == exact
    first, second = "δ" * 20_000 + "a", "δ" * 20_000 + "b"
    fitted = fit_name(first), fit_name(second)
    assert fitted[0] != fitted[1]
    for name in fitted:
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert name.startswith("δ" * 16_000)
        assert name[-17] == "~"


def test_too_long_series_are_shortened_counted_and_warned_once(
    tracelet_start: Callable[..., Run], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracelet")
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"offline": True}})
    long_a, long_b = "train/" + "x" * 40_000 + "a", "train/" + "x" * 40_000 + "b"
    for step in range(3):
        run.log_metric(long_a, float(step), step=step)
        run.log_metric(long_b, step + 0.5, step=step)
        run.log_metric("train/loss", 1.0, step=step)
    backend = _finish(run)
    scalars = read_session(backend.task_id or "").events_of("training_stats_scalar")
    by_series: dict[str, list[tuple[int, float]]] = {}
    for event in scalars:
        assert event["metric"] == "train"
        by_series.setdefault(event["variant"], []).append((event["iter"], event["value"]))
    assert set(by_series) == {fit_name("x" * 40_000 + "a"), fit_name("x" * 40_000 + "b"), "loss"}
    assert by_series[fit_name("x" * 40_000 + "a")] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert by_series[fit_name("x" * 40_000 + "b")] == [(0, 0.5), (1, 1.5), (2, 2.5)]
    assert all(len(series.encode()) <= MAX_NAME_BYTES for series in by_series)
    assert backend.adjustments == {"name_shortened": 6}
    assert len(_warnings(caplog, "name_shortened")) == 2


def test_values_beyond_float32_are_clamped_not_lost(tracelet_start: Callable[..., Run], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tracelet")
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"offline": True}})
    values = [1e39, -1e300, 3.0e38, -3.4e38, 1.5, 1e39]
    for step, value in enumerate(values):
        run.log_metric("huge", value, step=step)
    backend = _finish(run)
    stored = [(e["iter"], e["value"]) for e in read_session(backend.task_id or "").events_of("training_stats_scalar")]
    assert stored == [(0, FLOAT32_MAX), (1, -FLOAT32_MAX), (2, 3.0e38), (3, -3.4e38), (4, 1.5), (5, FLOAT32_MAX)]
    assert backend.adjustments == {"value_clamped": 3}
    assert len(_warnings(caplog, "value_clamped")) == 1


def _noise(width: int, height: int, step: int) -> Image:
    generator = random.Random(step)
    return Image("samples/noise", generator.randbytes(width * height * 3), width, height, 3, step, 1.0)


def _debug_png(url: str) -> PilImage.Image:
    with open(url, "rb") as file:
        picture = PilImage.open(io.BytesIO(file.read()))
        picture.load()
    return picture


def test_images_over_the_upload_limit_are_downscaled_until_they_fit(
    tracelet_start: Callable[..., Run], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracelet")
    settings = {"offline": True, "max_image_bytes": 200_000}
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": settings})
    run.log_record(_noise(400, 300, 0))  # ~360 kB of noise as PNG: halved once, to 200x150
    run.log_record(_noise(400, 300, 1))
    small = _noise(100, 50, 2)  # fits: sent pixel for pixel
    run.log_record(small)
    backend = _finish(run)
    samples = read_session(backend.task_id or "").events_of("training_debug_image")
    assert [event["iter"] for event in samples] == [0, 1, 2]
    pictures = [_debug_png(event["url"]) for event in samples]
    assert [picture.size for picture in pictures] == [(200, 150), (200, 150), (100, 50)]
    assert pictures[2].tobytes() == small.pixels
    expected = PilImage.frombytes("RGB", (400, 300), _noise(400, 300, 0).pixels).reduce(2)
    assert pictures[0].tobytes() == expected.tobytes()
    assert backend.adjustments == {"image_downscaled": 2}
    assert len(_warnings(caplog, "image_downscaled")) == 1


def test_no_image_limit_keeps_every_pixel(tracelet_start: Callable[..., Run]) -> None:
    settings = {"offline": True, "max_image_bytes": 0}
    run = tracelet_start(project="tests", backends=["clearml"], config={"clearml": settings})
    image = _noise(400, 300, 0)
    run.log_record(image)
    backend = _finish(run)
    (sample,) = read_session(backend.task_id or "").events_of("training_debug_image")
    assert _debug_png(sample["url"]).tobytes() == image.pixels
    assert backend.adjustments == {}


def test_a_negative_image_limit_is_a_configuration_error(tracelet_start: Callable[..., Run]) -> None:
    import tracelet

    with pytest.raises(tracelet.ConfigError, match="max_image_bytes"):
        tracelet_start(project="tests", backends=["clearml"], config={"clearml": {"max_image_bytes": -1}})
