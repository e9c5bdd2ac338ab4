"""The recording backend passes the conformance suite every backend passes (tracelet.testing.conformance).

Its "store" is memory: :func:`tracelet.testing.recorded` gives every recording
backend object that started or resumed a backend run, and the reader below
turns what they received into the suite's neutral :class:`StoredRun`.
Artifacts are kept as paths, so their bytes are read from those paths.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tracelet.media import encode_png
from tracelet.records import Artifact, Figure, Histogram, Image, Metric, Param, Tag, Text
from tracelet.testing import recorded
from tracelet.testing.conformance import BackendConformance, StoredHistogram, StoredImage, StoredRun, decode_png, walk_files


class TestRecordingBackend(BackendConformance):
    backend = "recording"
    timestamp_precision = 0.0  # it keeps the records themselves

    def settings(self, store: Path) -> Mapping[str, Any]:
        return {"batch_delay": 0.0}

    def read_run(self, store: Path, run_id: str) -> StoredRun:
        backends = recorded(run_id)
        assert backends, f"no recording backend started {run_id!r}"
        stored = StoredRun(run_id=run_id, status=backends[-1].status.value if backends[-1].status else None)
        for record in (record for backend in backends for record in backend.records):
            if isinstance(record, Metric):
                stored.metrics.setdefault(record.name, []).append((record.step, record.value, record.timestamp))
            elif isinstance(record, Param):
                stored.params[record.name] = str(record.value)
            elif isinstance(record, Tag):
                stored.tags[record.name] = record.value
            elif isinstance(record, Artifact):
                path = Path(record.path)
                if path.is_dir():
                    stored.artifacts.update((f"{record.name}/{relative}", data) for relative, data in walk_files(path))
                else:
                    stored.artifacts[record.name] = path.read_bytes()
            elif isinstance(record, Image):
                image = StoredImage(record.step, record.width, record.height, record.channels, record.pixels)
                stored.images.setdefault(record.name, []).append(image)
            elif isinstance(record, Figure):
                pixels, width, height, channels = decode_png(record.png)
                stored.images.setdefault(record.name, []).append(StoredImage(record.step, width, height, channels, pixels))
            elif isinstance(record, Text):
                stored.texts.setdefault(record.name, []).append((record.step, record.text))
            elif isinstance(record, Histogram):
                stored.histograms.setdefault(record.name, []).append(StoredHistogram(record.step, record.edges, record.counts))
        return stored


def test_decode_png_reads_back_what_encode_png_and_pillow_wrote() -> None:
    from PIL import Image as PILImage  # Pillow's encoder picks a filter per row: all five types get read

    for channels, mode in ((1, "L"), (3, "RGB"), (4, "RGBA")):
        pixels = bytes((index * 37 + index // 7) % 256 for index in range(31 * 17 * channels))
        image = Image("i", pixels, 31, 17, channels, 0, 0.0)
        assert decode_png(encode_png(image)) == (pixels, 31, 17, channels)
        buffer = io.BytesIO()
        PILImage.frombytes(mode, (31, 17), pixels).save(buffer, format="PNG", optimize=True)
        assert decode_png(buffer.getvalue()) == (pixels, 31, 17, channels)
