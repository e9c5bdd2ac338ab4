"""TensorBoard capture with real torch.utils.tensorboard: what Tracelet records is what TensorBoard wrote."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image as PILImage
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard import writer as writer_module

import tracelet
from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, Text
from tracelet.run import Run
from tracelet.testing import RecordingBackend

sys.path.insert(0, str(Path(__file__).parent))
from tensorboard_script import SCALAR_STEPS, write_everything

EVERYTHING = {"scalars": 0, "images": 0, "histograms": 0, "tensors": 0, "audio": 0, "compressedHistograms": 0}


def accumulate(logdir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(logdir), size_guidance=EVERYTHING)
    accumulator.Reload()
    return accumulator


def recording_of(run: Run) -> RecordingBackend:
    backend = run.get_plugin("recording")
    assert isinstance(backend, RecordingBackend)
    return backend


def stopped(run: Run) -> RecordingBackend:
    assert run.stop(timeout=30)
    return recording_of(run)


def pixels_of(png: bytes) -> tuple[bytes, int, int]:
    with PILImage.open(io.BytesIO(png)) as image:
        return image.tobytes(), image.width, image.height


def points(records: list[Any], name: str) -> list[tuple[int, float, float]]:
    return [(r.step, r.value, r.timestamp) for r in records if isinstance(r, Metric) and r.name == name]


def test_every_method_is_captured_as_tensorboard_wrote_it(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    run = tracelet_start(backends=["recording"])
    logdir = tmp_path / "tb"
    with SummaryWriter(str(logdir)) as writer:
        write_everything(writer, logdir)
    records = stopped(run).records
    main = accumulate(logdir)

    # Scalars, old and new style, and add_tensor of one element: step, float32 value and walltime.
    assert points(records, "loss") == [(e.step, e.value, e.wall_time) for e in main.Scalars("loss")]
    assert [step for step, _, _ in points(records, "loss")] == list(SCALAR_STEPS)
    for name in ("lr", "one"):
        written = [(e.step, e.tensor_proto.float_val[0], e.wall_time) for e in main.Tensors(name)]
        assert points(records, name) == written
    assert main.Tensors("many")[0].tensor_proto.float_val == [0, 1, 2, 3, 4, 5]
    assert not points(records, "many")  # a multi-element tensor has no record form: it stays in the event file

    # add_scalars: each child writer's series becomes "main_tag/tag".
    for child in ("train", "val"):
        written = [(e.step, e.value, e.wall_time) for e in accumulate(logdir / f"pair_{child}").Scalars("pair")]
        assert points(records, f"pair/{child}") == written
        assert len(written) == len(SCALAR_STEPS)

    # Histograms: TensorBoard's own bins and summary.
    histograms = {r.name: r for r in records if isinstance(r, Histogram)}
    assert sorted(histograms) == ["raw", "weights"]
    for name, record in histograms.items():
        (event,) = main.Histograms(name)
        value = event.histogram_value
        assert (record.step, record.timestamp) == (event.step, event.wall_time)
        assert record.counts == tuple(value.bucket)
        assert record.edges[1:] == tuple(value.bucket_limit)
        assert (record.minimum, record.maximum, record.count) == (value.min, value.max, value.num)
        assert (record.total, record.sum_squares) == (value.sum, value.sum_squares)
    assert histograms["raw"].edges == (0.0, 1.0, 2.0, 3.0)
    assert histograms["weights"].count == 1000

    # Images (add_image, add_images, add_image_with_boxes): the pixels TensorBoard encoded.
    images = {r.name: r for r in records if isinstance(r, Image)}
    assert sorted(images) == ["batch", "boxes", "grey", "image"]
    for name, record in images.items():
        (event,) = main.Images(name)
        assert (record.step, record.timestamp) == (event.step, event.wall_time)
        assert (record.pixels, record.width, record.height) == pixels_of(event.encoded_image_string)
    assert (images["image"].width, images["image"].height, images["image"].channels) == (6, 8, 3)

    # add_figure: the very PNG TensorBoard wrote, as a figure.
    (figure,) = [r for r in records if isinstance(r, Figure)]
    (event,) = main.Images("figure")
    assert (figure.name, figure.step, figure.png) == ("figure", event.step, event.encoded_image_string)

    # add_text.
    (text,) = [r for r in records if isinstance(r, Text)]
    (event,) = main.Tensors("note/text_summary")
    assert (text.name, text.text, text.step) == ("note", event.tensor_proto.string_val[0].decode(), event.step)

    # add_hparams: params from the call, metrics from its child writer's scalars.
    params = {r.name: r.value for r in records if isinstance(r, Param)}
    assert params == {"lr": 0.01, "optimizer": "sgd", "layers": 3}
    hp = accumulate(logdir / "hp")
    assert points(records, "hparam/accuracy") == [(e.step, e.value, e.wall_time) for e in hp.Scalars("hparam/accuracy")]

    # No record form: audio, graph, embedding, PR curves, custom scalars, mesh (and video, which
    # needs moviepy). They are in the event files, uploaded once as the log directory.
    assert [a.step for a in main.Audio("audio")] == [11]
    assert main.Graph() is not None
    assert {"pr", "pr_raw", "mesh_VERTEX", "custom_scalars__config__"} <= set(main.Tags()["tensors"])
    assert (logdir / "00013" / "emb" / "tensors.tsv").is_file()
    artifacts = [r for r in records if isinstance(r, Artifact)]
    assert artifacts == [Artifact(str(logdir), "tensorboard/tb")]

    # Nothing else, nothing twice.
    assert len(records) == 4 * len(SCALAR_STEPS) + 1 + 2 + 4 + 1 + 1 + 3 + 1 + 1


UNTIMED = {"custom_scalars__config__", "mesh_VERTEX", "mesh_FACE"}


def _fields(event: Any, drop_time: bool) -> str:
    fields = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else event._asdict()
    if drop_time:
        fields.pop("wall_time")
    return repr(fields)


def _event_contents(logdir: Path) -> dict[str, Any]:
    """Everything EventAccumulator reads from every run directory under ``logdir``."""
    contents: dict[str, Any] = {}
    for directory in sorted({path.parent for path in logdir.rglob("events.out.tfevents.*")}):
        accumulator = accumulate(directory)
        # add_hparams, add_mesh and add_custom_scalars take no walltime: compare all but that.
        in_hparams = directory.name == "hp"
        run: dict[str, Any] = {}
        for kind, tags in accumulator.Tags().items():
            if kind in ("graph", "meta_graph", "run_metadata"):
                run[kind] = tags
                continue
            for tag in tags if isinstance(tags, list) else []:
                events = getattr(accumulator, {"tensors": "Tensors", "scalars": "Scalars", "images": "Images",
                                               "histograms": "Histograms", "audio": "Audio",
                                               "distributions": "CompressedHistograms"}[kind])(tag)  # fmt: skip
                run[f"{kind}:{tag}"] = [_fields(event, in_hparams or tag in UNTIMED) for event in events]
        run["graph_def"] = accumulator.Graph().SerializeToString() if accumulator.Tags()["graph"] else None
        contents[str(directory.relative_to(logdir))] = run
    contents["files"] = sorted(str(p.relative_to(logdir)) for p in logdir.rglob("*") if "tfevents" not in p.name)
    contents["embedding"] = (logdir / "00013" / "emb" / "tensors.tsv").read_text()
    return contents


def test_event_files_are_what_they_would_be_without_tracelet(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    with SummaryWriter(str(plain)) as writer:
        write_everything(writer, plain)
    run = tracelet_start(backends=["recording"])
    captured = tmp_path / "captured"
    with SummaryWriter(str(captured)) as writer:
        write_everything(writer, captured)
    assert len(stopped(run).records) > 20
    assert _event_contents(captured) == _event_contents(plain)


PATCHED = [
    (writer_module.FileWriter, "add_event"),
    (writer_module.SummaryWriter, "add_scalars"),
    (writer_module.SummaryWriter, "add_figure"),
    (writer_module.SummaryWriter, "add_hparams"),
    (writer_module.SummaryWriter, "close"),
]


def test_stop_restores_the_original_functions(tracelet_start: Callable[..., Run]) -> None:
    originals = [vars(owner)[name] for owner, name in PATCHED]
    run = tracelet_start(backends=["recording"])
    assert all(vars(owner)[name] is not original for (owner, name), original in zip(PATCHED, originals, strict=True))
    run.stop()
    assert [vars(owner)[name] for owner, name in PATCHED] == originals
    assert all(vars(owner)[name] is original for (owner, name), original in zip(PATCHED, originals, strict=True))


def test_start_stop_start_captures_once(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    original = writer_module.FileWriter.add_event
    tracelet_start(backends=["recording"])
    run = tracelet_start(backends=["recording"])  # stops the first run, patches again
    assert writer_module.FileWriter.add_event.__wrapped__ is original  # one wrapper, not two
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        for step in range(3):
            writer.add_scalar("x", step, step)
    assert [(m.step, m.value) for m in stopped(run).metrics] == [(0, 0.0), (1, 1.0), (2, 2.0)]


class _PrefixingWriter(SummaryWriter):
    """A user subclass that overrides a method and calls the base class."""

    def add_scalar(self, tag: str, *args: Any, **kwargs: Any) -> None:
        super().add_scalar(f"sub/{tag}", *args, **kwargs)


def test_subclasses_and_two_writers_capture_each_value_once(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    run = tracelet_start(backends=["recording"])
    first = _PrefixingWriter(str(tmp_path / "first"))
    second = SummaryWriter(str(tmp_path / "second"))
    for step in range(4):
        first.add_scalar("loss", step, step)
        second.add_scalar("loss", 10 * step, step)
        first.add_scalars("both", {"a": step}, step)
    first.close()
    second.close()
    backend = stopped(run)
    assert backend.metric_values("sub/loss") == [(s, float(s)) for s in range(4)]
    assert backend.metric_values("loss") == [(s, 10.0 * s) for s in range(4)]
    assert backend.metric_values("both/a") == [(s, float(s)) for s in range(4)]
    assert len(backend.metrics) == 12
    assert sorted(a.name for a in backend.of_type(Artifact)) == ["tensorboard/first", "tensorboard/second"]


def test_errors_of_tensorboard_reach_the_user_unchanged(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    def failure() -> BaseException:
        with SummaryWriter(str(tmp_path / "tb")) as writer, pytest.raises(ValueError, match="no element") as raised:
            writer.add_histogram("empty", torch.tensor([]), 0)
        return raised.value

    plain = failure()
    run = tracelet_start(backends=["recording"])
    patched = failure()
    assert (type(patched), str(patched)) == (type(plain), str(plain)) == (ValueError, "The input has no element.")

    def frames(error: BaseException) -> list[tuple[str, str]]:
        return [(frame.name, frame.line or "") for frame in traceback.extract_tb(error.__traceback__)]

    # The same frames from the writer down to where TensorBoard raised; ours only adds the wrapper's.
    assert frames(patched)[-3:] == frames(plain)[-3:]
    assert stopped(run).records == []


def test_errors_of_capture_code_are_logged_and_training_goes_on(
    tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Fault injection into our own conversion code (not a mock of a library): it must stay contained.
    import tracelet_pytorch.tensorboard

    def broken(*_: Any) -> Any:
        raise RuntimeError("conversion bug")

    monkeypatch.setattr(tracelet_pytorch.tensorboard, "summary_records", broken)
    run = tracelet_start(backends=["recording"], strict=False)
    with caplog.at_level(logging.WARNING, logger="tracelet"), SummaryWriter(str(tmp_path / "tb")) as writer:
        writer.add_scalar("x", 1.0, 0)
        writer.add_scalar("x", 2.0, 1)
    assert [e.value for e in accumulate(tmp_path / "tb").Scalars("x")] == [1.0, 2.0]
    assert [r.getMessage() for r in caplog.records].count(next(r.getMessage() for r in caplog.records)) == 1
    assert "conversion bug" in caplog.text
    run.stop()

    strict_run = tracelet_start(backends=["recording"], strict=True)
    with SummaryWriter(str(tmp_path / "strict")) as writer, pytest.raises(RuntimeError, match="conversion bug"):
        writer.add_scalar("x", 1.0, 0)
    strict_run.stop()


def test_no_tensor_is_kept_alive(tracelet_run: Run, tmp_path: Path) -> None:
    tensors = [torch.tensor(1.5), torch.randn(100), torch.rand(3, 4, 4)]
    references = [weakref.ref(tensor) for tensor in tensors]
    with SummaryWriter(str(tmp_path / "tb")) as writer:
        writer.add_scalar("s", tensors[0], 0)
        writer.add_histogram("h", tensors[1], 0)
        writer.add_image("i", tensors[2], 0)
    del tensors
    gc.collect()
    assert [reference() for reference in references] == [None, None, None]
    assert len(stopped(tracelet_run).records) == 4


def test_patched_when_imported_after_start(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        import tracelet
        run = tracelet.start(backends=["recording"])
        heavy = sorted(m for m in ("torch", "tensorboard", "lightning") if m in sys.modules)
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter({str(tmp_path / "tb")!r}) as writer:
            writer.add_scalar("late", 4.0, 7)
        run.stop()
        print(json.dumps({{"heavy": heavy, "points": run.get_plugin("recording").metric_values("late")}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACELET_")} | {"TRACELET_STRICT": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"heavy": [], "points": [[7, 4.0]]}


def test_tensorboardx_is_captured_too(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    tensorboardx = pytest.importorskip("tensorboardX")  # optional: the tox env installs it
    run = tracelet_start(backends=["recording"])
    with tensorboardx.SummaryWriter(str(tmp_path / "tbx")) as writer:
        for step in range(3):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.add_scalars("pair", {"a": step, "b": -step}, step)
        writer.add_histogram("h", torch.arange(10.0), 3)
        writer.add_text("note", "x", 4)
    backend = stopped(run)
    written = accumulate(tmp_path / "tbx")
    assert backend.metric_values("loss") == [(e.step, e.value) for e in written.Scalars("loss")]
    assert backend.metric_values("pair/a") == [(s, float(s)) for s in range(3)]
    assert backend.metric_values("pair/b") == [(s, -float(s)) for s in range(3)]
    assert [h.count for h in backend.of_type(Histogram)] == [10]
    assert [t.text for t in backend.of_type(Text)] == ["x"]
    assert tracelet.active_run() is None
