"""The conformance suite every backend passes: subclass :class:`BackendConformance` in your tests.

A backend's test module supplies two things: how to point the backend at a
temporary store (:meth:`BackendConformance.settings`) and how to read that
store back, with the backend's own storage read directly, into the neutral
form :class:`StoredRun` (:meth:`BackendConformance.read_run`)::

    from tracelet.testing.conformance import BackendConformance, StoredRun

    class TestMyBackend(BackendConformance):
        backend = "my-backend"
        timestamp_precision = 0.001  # the store keeps milliseconds

        def settings(self, store):
            return {"directory": str(store)}

        def read_run(self, store, run_id):
            ...  # open the store, return a StoredRun

Each ``test_*`` method is one case of :data:`CASES`. A case the backend
declares in ``PluginInfo.unsupported`` (``{"histograms": "the store has no
histograms"}``) is reported as skipped with that reason, never passed.

The backend is started with ``tracelet.start(backends=[backend])`` through the
``tracelet_start`` fixture (strict mode, the working directory is the test's
``tmp_path``, only this backend and the recording backend are loaded). Its
settings are given as ``TRACELET_<BACKEND>_<KEY>`` environment variables,
so that ``tracelet replay`` (which uses the configuration of its day) sees the
same store.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pluggy
import pytest

import tracelet.plugins
import tracelet.replay  # bound before any test patches tracelet.plugins.hooks_of
from tracelet.info import PluginInfo
from tracelet.media import encode_png
from tracelet.records import Figure, Histogram, Image, Record, RunStatus, Text
from tracelet.run import Run

__all__ = ["CASES", "BackendConformance", "StoredHistogram", "StoredImage", "StoredRun", "decode_png", "walk_files"]

CASES: Mapping[str, str] = {
    "metrics": "metric points with exact values, steps (step 0 included), timestamps and order",
    "large_steps": "steps up to 2**62",
    "out_of_order_steps": "repeated and decreasing steps, kept in logging order",
    "not_finite": "NaN, +inf and -inf metric values",
    "names": "unicode names and names of 250 characters",
    "burst": "10,000 points of one series logged in a tight loop",
    "params": "params: nested (flattened), scalar types, re-logged (the last value wins)",
    "long_params": "a param value of 10,000 characters",
    "tags": "tags, unicode values included",
    "artifacts": "files and directories, byte for byte",
    "images": "images (grey, RGB, RGBA) by pixels",
    "figures": "figures by the pixels of their PNG",
    "texts": "texts by step",
    "histograms": "histograms: edges and counts by step",
    "status": "the run's end status: FINISHED, FAILED, KILLED",
    "resume_setting": "a second start() with the backend's resume setting continues the same run",
    "replay": "spooled records reach the same backend run once through `tracelet replay`; a second replay sends nothing",
    "permanent_error": "input the backend can never take is refused with PermanentError, not retried, and the rest arrives",
}
"""Every case of the suite: ``PluginInfo.unsupported`` keys -> what it checks."""

_ROUTING_HOOKS = frozenset(
    {
        "tracelet_backend_log_metrics",
        "tracelet_backend_log_params",
        "tracelet_backend_set_tags",
        "tracelet_backend_log_artifacts",
        "tracelet_backend_log_media",
        "tracelet_backend_flush",
    }
)
_STOP_TIMEOUT = 60.0
_TIMESTAMP_SLACK = 1e-6
"""Float seconds near 1.7e9 are exact to ~2.4e-7: the slack every comparison of timestamps allows."""


@attrs.frozen
class StoredImage:
    """An image or figure as the store holds it, decoded: 8-bit pixels, row-major."""

    step: int
    width: int
    height: int
    channels: int
    pixels: bytes


@attrs.frozen
class StoredHistogram:
    """A histogram as the store holds it: ``counts[i]`` values in ``[edges[i], edges[i + 1])``."""

    step: int
    edges: tuple[float, ...]
    counts: tuple[float, ...]


@attrs.define
class StoredRun:
    """One backend run read back from the backend's store, in a form every backend can fill.

    Lists are in the store's order (for metrics: by timestamp, as logged).
    Params are text (``str(value)``), with the latest value of a re-logged
    name. Artifacts are keyed by their path in the run (``"bundle/sub/b.txt"``).
    Figures are images: the store holds their pixels.
    """

    run_id: str
    status: str | None
    """``"FINISHED"``, ``"FAILED"``, ``"KILLED"``, or ``None`` while the run is open."""
    metrics: dict[str, list[tuple[int, float, float]]] = attrs.Factory(dict)
    """Series name -> ``(step, value, timestamp in seconds)`` per point."""
    params: dict[str, str] = attrs.Factory(dict)
    tags: dict[str, str] = attrs.Factory(dict)
    artifacts: dict[str, bytes] = attrs.Factory(dict)
    images: dict[str, list[StoredImage]] = attrs.Factory(dict)
    texts: dict[str, list[tuple[int, str]]] = attrs.Factory(dict)
    histograms: dict[str, list[StoredHistogram]] = attrs.Factory(dict)


class _Gate:
    """Holds a backend's routing hooks until released: the backend looks hung, so records spool."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self.held = threading.Event()

    def wait(self) -> None:
        self.held.set()
        self._open.wait(_STOP_TIMEOUT)
        # The run that called this hook was abandoned at its deadline: deliver nothing, as a dead server would.
        raise ConnectionError("conformance: the backend was unreachable for this run")

    def release(self) -> None:
        self._open.set()


class _GatedHooks:
    """A backend's hook relay whose routing hooks wait at a :class:`_Gate`."""

    def __init__(self, hooks: pluggy.HookRelay, gate: _Gate) -> None:
        self._hooks = hooks
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        hook = getattr(self._hooks, name)
        if name not in _ROUTING_HOOKS:
            return hook

        def gated(**arguments: Any) -> Any:
            self._gate.wait()
            return hook(**arguments)

        return gated


class BackendConformance:
    """A pytest base class: a backend's test class subclasses it and passes every case of :data:`CASES`.

    Override :attr:`backend`, :meth:`settings` and :meth:`read_run`; optionally
    :attr:`timestamp_precision`, :meth:`resume_settings` and :meth:`impossible_record`.
    """

    backend: ClassVar[str] = ""
    """The backend's plugin name (its entry point)."""
    timestamp_precision: ClassVar[float] = 0.0
    """Seconds: how far a stored timestamp may be from the logged one (0.0005 for milliseconds, rounded)."""

    # --- what a backend's test class supplies ------------------------------------------

    def settings(self, store: Path) -> Mapping[str, Any]:
        """The backend's settings (its ``[tool.tracelet.<backend>]`` keys) pointing at ``store``, an empty directory."""
        raise NotImplementedError("BackendConformance.settings: return the backend's settings for a store in `store`")

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        """Read the run ``run_id`` (the id the backend's start hook returned) back from ``store``."""
        raise NotImplementedError("BackendConformance.read_run: read the backend's store back into a StoredRun")

    def resume_settings(self, store: Path, run_id: str) -> Mapping[str, Any] | None:
        """Settings that make a new ``start()`` continue the run ``run_id``; ``None`` if the backend has none.

        A backend without a resume setting declares ``unsupported={"resume_setting": ...}``.
        """
        return None

    def impossible_record(self, tmp_path: Path) -> Record | None:
        """A valid record (one core lets through) that this backend can never store; its hook must raise
        ``PermanentError``.

        Default: ``None``, and the case is skipped saying so. Core already
        refuses at the door what no backend can store (a missing artifact
        file, a step outside int64, an empty image: see ``tracelet.checks``),
        so only a backend with limits of its own has such a record.
        """
        return None

    # --- the harness --------------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _conformance(
        self, tracelet_start: Callable[..., Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
    ) -> None:
        if not self.backend:
            raise TypeError(f"{type(self).__name__}.backend must name the backend plugin under test")
        self._start_run = tracelet_start
        self._tmp = tmp_path
        self._monkeypatch = monkeypatch
        self.store = tmp_path / "store"
        self.store.mkdir()
        self._configured = False
        case = request.function.__name__.removeprefix("test_")
        unsupported = self._info().unsupported
        if case in unsupported:
            pytest.skip(f"{self.backend} does not support {case!r}: {unsupported[case]}")

    def _info(self) -> PluginInfo:
        loaded = tracelet.plugins.loaded_plugins()
        if self.backend not in loaded:
            found = {entry.name: entry for entry in tracelet.plugins.discover()}
            entry = found.get(self.backend)
            detail = f"{entry.status}: {entry.error}" if entry else "not installed (no entry point in the 'tracelet' group)"
            raise LookupError(f"backend plugin {self.backend!r} is {detail}")
        return loaded[self.backend]

    def _set_settings(self, settings: Mapping[str, Any]) -> None:
        prefix = "TRACELET_" + self.backend.upper().replace("-", "_") + "_"
        for key, value in settings.items():
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            self._monkeypatch.setenv(prefix + key.upper(), text)

    def start(self, **options: Any) -> Run:
        """Start a run delivering to the backend under test only."""
        if not self._configured:  # here, not in the fixture: a subclass's own fixtures have run by now
            self._set_settings(self.settings(self.store))
            self._configured = True
        return self._start_run(backends=[self.backend], **options)

    def finish(self, run: Run, status: RunStatus = RunStatus.FINISHED) -> StoredRun:
        """Stop ``run`` (everything must be delivered) and read its backend run back."""
        delivered = run.stop(status, timeout=_STOP_TIMEOUT)
        stats = run.stats()[self.backend]
        assert delivered, f"stop() did not deliver everything: {stats}"
        assert stats.run_id is not None, "the backend's start hook returned no BackendRunRef"
        return self.read_run(self.store, stats.run_id)

    def assert_series(self, stored: StoredRun, name: str, expected: Sequence[tuple[int, float, float]]) -> None:
        """The stored series ``name`` is ``expected``: same length, order, steps and values; timestamps to the precision."""
        assert name in stored.metrics, f"no series {name!r} in the store; series: {sorted(stored.metrics)[:20]}"
        points = stored.metrics[name]
        assert [step for step, _, _ in points] == [step for step, _, _ in expected], f"steps of {name!r}"
        for index, ((_, value, timestamp), (_, want, want_time)) in enumerate(zip(points, expected, strict=True)):
            same = (math.isnan(value) and math.isnan(want)) or value == want
            assert same, f"{name!r} point {index}: stored {value!r}, logged {want!r}"
            error = abs(timestamp - want_time)
            assert error <= self.timestamp_precision + _TIMESTAMP_SLACK, (
                f"{name!r} point {index}: timestamp {timestamp!r} is {error:.6f} s from the logged {want_time!r} "
                f"(precision declared: {self.timestamp_precision} s)"
            )

    # --- the cases ----------------------------------------------------------------------

    def test_metrics(self) -> None:
        run = self.start()
        base = _base_time()
        # Timestamps off the millisecond grid: a store's rounding shows against its declared precision.
        expected = [(step, step * 0.5 - 1.0, base + step * 0.2503) for step in range(20)]
        for step, value, timestamp in expected:
            run.log_metric("loss", value, step=step, timestamp=timestamp)
        run.log_metric("zero", 0.0, step=0, timestamp=base)
        stored = self.finish(run)
        self.assert_series(stored, "loss", expected)
        self.assert_series(stored, "zero", [(0, 0.0, base)])

    def test_large_steps(self) -> None:
        run = self.start()
        base = _base_time()
        expected = [(2**31, 1.0, base), (2**53 + 1, 2.0, base + 1), (2**62, 3.0, base + 2)]
        for step, value, timestamp in expected:
            run.log_metric("big", value, step=step, timestamp=timestamp)
        self.assert_series(self.finish(run), "big", expected)

    def test_out_of_order_steps(self) -> None:
        run = self.start()
        base = _base_time()
        steps = [5, 3, 3, 4, 0, 5, 10, 7]
        expected = [(step, float(index), base + index * 0.01) for index, step in enumerate(steps)]
        for step, value, timestamp in expected:
            run.log_metric("wobbly", value, step=step, timestamp=timestamp)
        self.assert_series(self.finish(run), "wobbly", expected)

    def test_not_finite(self) -> None:
        run = self.start()
        base = _base_time()
        expected = [(0, math.nan, base), (1, math.inf, base + 1), (2, -math.inf, base + 2), (3, 1.5, base + 3)]
        for step, value, timestamp in expected:
            run.log_metric("edge", value, step=step, timestamp=timestamp)
        self.assert_series(self.finish(run), "edge", expected)

    def test_names(self) -> None:
        run = self.start()
        base = _base_time()
        unicode_name = "Verlust/δ/損失"
        long_name = "long/" + "x" * 245
        assert len(long_name) == 250
        run.log_metric(unicode_name, 1.25, step=1, timestamp=base)
        run.log_metric(long_name, 2.5, step=2, timestamp=base)
        stored = self.finish(run)
        self.assert_series(stored, unicode_name, [(1, 1.25, base)])
        self.assert_series(stored, long_name, [(2, 2.5, base)])

    def test_burst(self) -> None:
        run = self.start()
        for step in range(10_000):
            run.log_metric("burst", step * 0.25, step=step)
        stored = self.finish(run)
        points = stored.metrics.get("burst", [])
        assert [(step, value) for step, value, _ in points] == [(step, step * 0.25) for step in range(10_000)]
        assert run.stats()[self.backend].delivered >= 10_000

    def test_params(self) -> None:
        run = self.start()
        run.log_params({"optim": {"lr": 0.001, "betas": {"b1": 0.9}}, "epochs": 10, "amp": True, "note": "héllo"})
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.2})
        run.log_params({"lr": 0.2})
        stored = self.finish(run)
        expected = {"optim.lr": "0.001", "optim.betas.b1": "0.9", "epochs": "10", "amp": "True", "note": "héllo", "lr": "0.2"}
        assert {key: stored.params.get(key) for key in expected} == expected

    def test_long_params(self) -> None:
        run = self.start()
        value = "".join(chr(ord("a") + index % 26) for index in range(10_000))
        run.log_params({"long": value})
        assert self.finish(run).params.get("long") == value

    def test_tags(self) -> None:
        run = self.start()
        run.set_tags({"team": "vision", "unicode": "Ünïcødé ✓"})
        run.set_tags({"team": "audio"})
        stored = self.finish(run)
        assert {key: stored.tags.get(key) for key in ("team", "unicode")} == {"team": "audio", "unicode": "Ünïcødé ✓"}

    def test_artifacts(self) -> None:
        run = self.start()
        source = self._tmp / "source"
        (source / "bundle" / "sub").mkdir(parents=True)
        files = {
            "model.bin": bytes(range(256)) * 64,
            "bundle/c.bin": b"\x00\xff" * 1000 + b"\n",
            "bundle/sub/b.txt": "héllo\r\nwörld\n".encode(),
        }
        for relative, content in files.items():
            (source / relative).write_bytes(content)
        run.log_artifact(source / "model.bin")
        run.log_artifact(source / "bundle")
        stored = self.finish(run)
        assert {key: stored.artifacts.get(key) for key in files} == files

    def test_images(self) -> None:
        run = self.start()
        images = [
            Image("grey", bytes(range(12)), 4, 3, 1, 0, time.time()),
            Image("grey", bytes(range(100, 112)), 4, 3, 1, 1, time.time()),
            Image("rgb", bytes(range(2 * 3 * 3)), 2, 3, 3, 0, time.time()),
            Image("rgba", bytes(range(0, 250, 10))[:16], 2, 2, 4, 7, time.time()),
        ]
        for image in images:
            run.log_record(image)
        stored = self.finish(run)
        for name in ("grey", "rgb", "rgba"):
            want = [StoredImage(i.step, i.width, i.height, i.channels, i.pixels) for i in images if i.name == name]
            assert stored.images.get(name) == want, name

    def test_figures(self) -> None:
        run = self.start()
        drawn = Image("plot", bytes((index * 7) % 256 for index in range(5 * 4 * 3)), 5, 4, 3, 2, time.time())
        run.log_record(Figure("plot", encode_png(drawn), 2, time.time()))
        stored = self.finish(run)
        assert stored.images.get("plot") == [StoredImage(2, 5, 4, 3, drawn.pixels)]

    def test_texts(self) -> None:
        run = self.start()
        texts = [(0, "first\nline two"), (1, "Ünïcødé ✓ 損失"), (5, "")]
        for step, text in texts:
            run.log_record(Text("notes", text, step, time.time()))
        assert self.finish(run).texts.get("notes") == texts

    def test_histograms(self) -> None:
        run = self.start()
        histograms = [
            Histogram("weights", (0.0, 0.5, 1.0, 1.5), (3.0, 0.0, 7.0), 0.1, 1.4, 9.1, 10, 11.3, 0, time.time()),
            Histogram("weights", (-1.0, 1.0), (4.0,), -0.5, 0.5, 0.0, 4, 1.0, 1, time.time()),
        ]
        for histogram in histograms:
            run.log_record(histogram)
        stored = self.finish(run)
        assert stored.histograms.get("weights") == [StoredHistogram(h.step, h.edges, h.counts) for h in histograms]

    @pytest.mark.parametrize("status", list(RunStatus))
    def test_status(self, status: RunStatus) -> None:
        run = self.start()
        run.log_metric("x", 1.0, step=0)
        stored = self.finish(run, status)
        assert stored.status == status.value
        assert stored.metrics.get("x", [(0, 0.0, 0.0)])[0][:2] == (0, 1.0)

    def test_resume_setting(self) -> None:
        first = self.start()
        base = _base_time()
        first.log_metric("m", 0.0, step=0, timestamp=base)
        first.log_metric("m", 1.0, step=1, timestamp=base + 1)
        run_id = self.finish(first).run_id
        settings = self.resume_settings(self.store, run_id)
        assert settings is not None, (
            "resume_settings() returned None: declare PluginInfo(unsupported={'resume_setting': reason}) instead"
        )
        self._set_settings(settings)
        second = self.start()
        second.log_metric("m", 2.0, step=2, timestamp=base + 2)
        stored = self.finish(second, RunStatus.FAILED)
        assert stored.run_id == run_id
        self.assert_series(stored, "m", [(step, float(step), base + step) for step in range(3)])
        assert stored.status == "FAILED"

    def test_replay(self) -> None:
        gate = _Gate()
        original = tracelet.plugins.hooks_of

        def gated_hooks_of(instance: object, name: str) -> Any:
            hooks = original(instance, name)
            return _GatedHooks(hooks, gate) if name == self.backend else hooks

        # The backend starts, then its first routing hook waits: the run's records go to its spool at stop().
        self._monkeypatch.setattr(tracelet.plugins, "hooks_of", gated_hooks_of)
        run = self.start(retry_attempts=1, spool_after=0.2)
        self._monkeypatch.setattr(tracelet.plugins, "hooks_of", original)
        base = _base_time()
        expected = [(step, step * 1.5, base + step * 0.01) for step in range(300)]
        for step, value, timestamp in expected:
            run.log_metric("spooled", value, step=step, timestamp=timestamp)
        run.log_params({"lr": 0.5})
        run.set_tags({"phase": "offline"})
        assert gate.held.wait(_STOP_TIMEOUT), "the backend's first routing hook was never called"
        assert run.stop(RunStatus.FINISHED, timeout=1.0) is False
        stats = run.stats()[self.backend]
        assert stats.spooled == 302, stats
        assert stats.run_id is not None
        gate.release()
        spool = Path(run.settings.spool_dir).absolute()
        results = tracelet.replay.replay(spool, progress=None)
        assert [(r.backend, r.left, r.error) for r in results] == [(self.backend, False, None)]
        assert results[0].sent == stats.spooled
        assert tracelet.replay.replay(spool, progress=None) == [], "a second replay must send nothing"
        stored = self.read_run(self.store, stats.run_id)
        assert stored.run_id == stats.run_id
        self.assert_series(stored, "spooled", expected)
        assert stored.params.get("lr") == "0.5"
        assert stored.tags.get("phase") == "offline"
        assert stored.status == "FINISHED"

    def test_permanent_error(self) -> None:
        impossible = self.impossible_record(self._tmp)
        if impossible is None:
            pytest.fail(
                f"{self.backend}: impossible_record() returns None; return a record your backend refuses with "
                "PermanentError, or declare PluginInfo(unsupported={'permanent_error': reason}) if it refuses none "
                "of those core lets through"
            )
        run = self.start(retry_attempts=3, retry_base=0.01)
        run.log_record(impossible)
        run.flush(_STOP_TIMEOUT)
        run.log_metric("after", 1.0, step=0)
        assert run.stop(timeout=_STOP_TIMEOUT) is False, "a refused record makes stop() report a failure"
        stats = run.stats()[self.backend]
        assert (stats.failed, stats.retries) == (1, 0), stats
        assert stats.run_id is not None
        stored = self.read_run(self.store, stats.run_id)
        assert [point[:2] for point in stored.metrics.get("after", [])] == [(0, 1.0)]
        assert stored.status == "FINISHED"


def _base_time() -> float:
    """A recent whole second, so stores that keep milliseconds hold the logged timestamps exactly."""
    return float(int(time.time()) - 60)


def decode_png(data: bytes) -> tuple[bytes, int, int, int]:
    """``(pixels, width, height, channels)`` of an 8-bit, non-interlaced grey, RGB or RGBA PNG.

    For readers of stores that keep images as PNG files, without an imaging library.
    """
    import struct
    import zlib

    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    position, chunks, header = 8, [], b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        tag = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if tag == b"IHDR":
            header = body
        elif tag == b"IDAT":
            chunks.append(body)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    channels = {0: 1, 2: 3, 6: 4, 4: 2}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for index in range(stride):
            left = line[index - channels] if index >= channels else 0
            up = previous[index]
            corner = previous[index - channels] if index >= channels else 0
            if kind == 1:
                line[index] = (line[index] + left) & 0xFF
            elif kind == 2:
                line[index] = (line[index] + up) & 0xFF
            elif kind == 3:
                line[index] = (line[index] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[index] = (line[index] + predictor) & 0xFF
        rows.append(line)
        previous = line
    return b"".join(bytes(row) for row in rows), width, height, channels


def walk_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """``(path relative to root with "/", content)`` of every file under ``root``: for readers of file stores."""
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            yield path.relative_to(root).as_posix(), path.read_bytes()
