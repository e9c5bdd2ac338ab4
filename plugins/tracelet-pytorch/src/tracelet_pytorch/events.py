"""Turning the TensorBoard ``Event`` protos a writer has just written into Tracelet records.

We read what TensorBoard wrote rather than what the user passed: the values
are exactly those in the event file (float32 for scalars, TensorBoard's own
histogram bins and image encoding), and TensorBoard has already moved every
tensor to the host, so capture adds no device synchronisation and keeps no
reference to a tensor.

Summary values with no Tracelet record form (audio, video, graphs, PR
curves, meshes, custom-scalar layouts, multi-element ``add_tensor`` and the
``add_hparams`` plugin data, whose params are taken from the call instead)
give no record here; they stay in the event files, which the plugin
uploads as an artifact when the writer is closed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from tracelet.plugin import Figure, Histogram, Image, Metric, Record, Text

__all__ = ["summary_records"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_SUFFIX = "/text_summary"  # torch.utils.tensorboard appends it to add_text's tag
_NUMBER_FIELDS = ("float_val", "double_val", "int_val", "int64_val", "uint32_val", "uint64_val")


def summary_records(event: Any, name_for: Callable[[str], str], figures: bool) -> Iterator[Record]:
    """Yield a record per summary value of ``event`` that has a Tracelet form.

    ``name_for(tag)`` gives the record name of a tag (``add_scalars`` renames
    its children); with ``figures``, PNG images become :class:`Figure` records
    (the event was written by ``add_figure``).
    """
    if not event.HasField("summary"):
        return
    step = event.step
    timestamp = event.wall_time
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            yield Metric(name_for(value.tag), value.simple_value, step, timestamp)
        elif kind == "tensor":
            record = _tensor_record(value, name_for(value.tag), step, timestamp)
            if record is not None:
                yield record
        elif kind == "histo":
            yield _histogram(value.histo, name_for(value.tag), step, timestamp)
        elif kind == "image":
            encoded = value.image.encoded_image_string
            if encoded.startswith(_PNG_SIGNATURE):  # GIFs are add_video's: no record form
                yield (Figure if figures else _image)(name_for(value.tag), encoded, step, timestamp)


def _tensor_record(value: Any, name: str, step: int, timestamp: float) -> Record | None:
    plugin = value.metadata.plugin_data.plugin_name
    tensor = value.tensor
    if plugin == "text":
        if len(tensor.string_val) != 1:
            return None
        text = tensor.string_val[0].decode("utf-8", errors="replace")
        return Text(name.removesuffix(_TEXT_SUFFIX), text, step, timestamp)
    if plugin in ("scalars", "tensor", ""):
        numbers = [number for field in _NUMBER_FIELDS for number in getattr(tensor, field)]
        if len(numbers) == 1:  # a scalar (new_style add_scalar, or add_tensor of one element)
            return Metric(name, float(numbers[0]), step, timestamp)
    return None


def _histogram(histo: Any, name: str, step: int, timestamp: float) -> Histogram:
    # TensorBoard stores right bucket edges only; its first bucket is empty and
    # its right edge is the histogram's left edge, so nothing is lost.
    limits = tuple(histo.bucket_limit)
    lower = min(histo.min, limits[0]) if limits else histo.min
    return Histogram(
        name=name,
        edges=(lower, *limits),
        counts=tuple(histo.bucket),
        minimum=histo.min,
        maximum=histo.max,
        total=histo.sum,
        count=int(histo.num),
        sum_squares=histo.sum_squares,
        step=step,
        timestamp=timestamp,
    )


def _image(name: str, png: bytes, step: int, timestamp: float) -> Image:
    from PIL import Image as PILImage  # TensorBoard needed Pillow to encode it

    with PILImage.open(io.BytesIO(png)) as decoded:
        mode = decoded.mode if decoded.mode in ("L", "RGB", "RGBA") else "RGBA"
        converted = decoded.convert(mode)
        width, height = converted.size
        return Image(name, converted.tobytes(), width, height, len(converted.getbands()), step, timestamp)
