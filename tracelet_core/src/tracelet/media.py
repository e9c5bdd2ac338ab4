"""Converting images, histograms and figures into records, and images into PNG.

Conversions that must copy user data (an image tensor that training will
overwrite, a figure that is not thread-safe) run on the caller's thread;
PNG encoding of images runs later, on a backend's worker, through
:func:`encode_png`. numpy is imported only when the user passed an array.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

from tracelet.records import Histogram, Image

__all__ = ["encode_png", "figure_to_png", "image_pixels", "make_histogram"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # grey, RGB, RGBA
_PIL_MODES = {"1": "L", "L": "L", "RGB": "RGB", "RGBA": "RGBA"}


def image_pixels(image: Any) -> tuple[bytes, int, int, int]:
    """Return ``(pixels, width, height, channels)`` of a numpy array, torch tensor or PIL image.

    Arrays may be ``HW``, ``HWC`` or ``CHW`` (torch tensors are read as
    ``CHW`` when their first dimension has 1, 3 or 4 entries, as TensorBoard
    does) with 1, 3 or 4 channels. Floats are taken as ``[0, 1]`` and scaled to
    0-255; other values are clipped to 0-255.
    """
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):
        converted = image.convert(_PIL_MODES.get(image.mode, "RGBA"))
        width, height = converted.size
        return converted.tobytes(), width, height, len(converted.getbands())
    import numpy as np  # only reached for arrays and tensors, so numpy is installed

    is_tensor = type(image).__module__.startswith("torch")
    array = np.asarray(image.detach().cpu().numpy() if is_tensor else image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and (is_tensor or array.shape[-1] not in (1, 3, 4)):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[-1] not in _PNG_COLOR_TYPES:
        raise ValueError(f"an image must be HW, HWC or CHW with 1, 3 or 4 channels; got shape {tuple(np.shape(image))}")
    if array.dtype.kind == "f":
        array = np.nan_to_num(array, nan=0.0) * 255.0 + 0.5
    pixels = np.ascontiguousarray(np.clip(array, 0, 255).astype(np.uint8))
    height, width, channels = pixels.shape
    return pixels.tobytes(), int(width), int(height), int(channels)


def encode_png(image: Image) -> bytes:
    """Encode an :class:`~tracelet.records.Image` as PNG (8 bits per channel, no filter)."""
    stride = image.width * image.channels
    rows = b"".join(b"\x00" + image.pixels[row * stride : (row + 1) * stride] for row in range(image.height))
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, _PNG_COLOR_TYPES[image.channels], 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 6)) + _chunk(b"IEND", b"")


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def figure_to_png(figure: Any) -> bytes:
    """Render a matplotlib figure (anything with ``savefig``) to PNG bytes."""
    if not callable(getattr(figure, "savefig", None)):
        raise TypeError(f"expected a matplotlib figure (an object with savefig()), got {type(figure).__name__}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def make_histogram(name: str, values: Any, bins: int, step: int, timestamp: float) -> Histogram:
    """Bin ``values`` (a sequence, numpy array or tensor) into a :class:`Histogram`.

    Non-finite values are left out of the bins and the summary.
    """
    if isinstance(values, Sequence) and not isinstance(values, str | bytes):
        finite = [float(v) for v in values if math.isfinite(float(v))]
        return _histogram_of_floats(name, finite, bins, step, timestamp)
    import numpy as np

    if type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        return _histogram_of_floats(name, [], bins, step, timestamp)
    counts, edges = np.histogram(array, bins=bins)
    return Histogram(
        name=name,
        edges=tuple(float(edge) for edge in edges),
        counts=tuple(float(count) for count in counts),
        minimum=float(array.min()),
        maximum=float(array.max()),
        total=float(array.sum()),
        count=int(array.size),
        sum_squares=float(np.dot(array, array)),
        step=step,
        timestamp=timestamp,
    )


def _histogram_of_floats(name: str, values: list[float], bins: int, step: int, timestamp: float) -> Histogram:
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    if low == high:
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    edges = (*(low + width * index for index in range(bins)), high)
    counts = [0.0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return Histogram(
        name=name,
        edges=edges,
        counts=tuple(counts),
        minimum=min(values) if values else 0.0,
        maximum=max(values) if values else 0.0,
        total=math.fsum(values),
        count=len(values),
        sum_squares=math.fsum(value * value for value in values),
        step=step,
        timestamp=timestamp,
    )
