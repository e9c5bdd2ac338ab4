"""Read an AIM run back through aim's own SDK (``aim.Repo(path).get_run``) into the conformance suite's neutral form.

Shared by tracelet-aim's tests (tests/aim) and the cross-backend parity tests (tests/all).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png
from tracelet_aim.backend import PARAMS_KEY, TAGS_KEY, TRACELET_KEY
from tracelet_aim.mapping import HISTOGRAM_KIND, KIND_KEY, REPEAT_KEY, flatten_params, histogram_edges, tracelet_name

__all__ = ["read_aim_run"]


def _points(sequence: Any) -> list[tuple[int, Any, float]]:
    """``(step, value, timestamp)`` of an aim sequence, in step order."""
    steps, (values, _epochs, times) = sequence.data.items_list()
    return sorted(zip(steps, values, times, strict=True), key=lambda point: point[0])


def read_aim_run(repo: Path | str, run_hash: str, index: bool = False) -> StoredRun:
    """The AIM run ``run_hash`` of the repository ``repo`` through ``aim.Repo``, undoing docs/plugins/aim.md's mapping.

    Series: every context of one Tracelet name (its base and ``repeat`` contexts) merged, in timestamp order
    (the record's time, which the backend keeps), then by repeat: logging order.
    """
    import aim

    repository = aim.Repo.from_path(str(repo))
    if index:  # a tracking server's runs are indexed by AIM's UI (`aim up`), not by the server: do it here
        from aim.sdk.index_manager import RepoIndexManager

        RepoIndexManager.get_index_manager(repository).index(run_hash)
    run = repository.get_run(run_hash)
    assert run is not None, f"AIM run {run_hash} is not visible to aim.Repo({repo!s}) (not indexed?)"
    tracelet = run.get(TRACELET_KEY, {}) or {}
    status = tracelet.get("status")
    stored = StoredRun(run_id=run_hash, status=None if status in (None, "RUNNING") else status)
    stored.params = {key: str(value) for key, value in flatten_params(run.get(PARAMS_KEY, {}) or {}).items()}
    stored.tags = {str(key): str(value) for key, value in (run.get(TAGS_KEY, {}) or {}).items()}

    merged: dict[tuple[str, str], list[tuple[float, int, int, Any]]] = {}
    exact_bins: dict[tuple[str, int], tuple[tuple[float, ...], tuple[float, ...]]] = {}
    kinds = {
        "metric": (("float", "int"), run.get_metric),
        "image": (("aim.image",), run.get_image_sequence),
        "text": (("aim.text",), run.get_text_sequence),
        "histogram": (("aim.distribution",), run.get_distribution_sequence),
    }
    for kind, (dtypes, get) in kinds.items():
        for name, context, _ in run.iter_sequence_info_by_type(dtypes):
            values = dict(context.to_dict())  # a copy: aim shares the dict of its cached Context
            repeat = int(values.pop(REPEAT_KEY, 1))
            extra = values.pop(KIND_KEY, None)
            sequence = get(name, context)
            assert sequence is not None
            tracelet = tracelet_name(name, values)
            for step, value, timestamp in _points(sequence):
                if extra == HISTOGRAM_KIND:
                    document = json.loads(value.data)
                    exact_bins[(tracelet, step, repeat)] = (tuple(document["edges"]), tuple(document["counts"]))  # type: ignore[index]
                else:
                    merged.setdefault((kind, tracelet), []).append((timestamp, repeat, step, value))
    for (kind, name), points in merged.items():
        points.sort(key=lambda point: (point[0], point[1]))
        if kind == "metric":
            stored.metrics[name] = [(step, float(value), timestamp) for timestamp, _, step, value in points]
        elif kind == "image":
            images = stored.images[name] = []
            for _, _, step, image in points:
                pixels, width, height, channels = decode_png(bytes(image.storage["data"].load()))
                images.append(StoredImage(step, width, height, channels, pixels))
        elif kind == "text":
            stored.texts[name] = [(step, text.data) for _, _, step, text in points]
        else:
            histograms = stored.histograms[name] = []
            for _, repeat, step, distribution in points:
                low, high = distribution.range
                counts = tuple(float(count) for count in distribution.weights)
                edges = histogram_edges(low, high, distribution.bin_count)
                edges, counts = exact_bins.get((name, step, repeat), (edges, counts))  # type: ignore[arg-type]
                histograms.append(StoredHistogram(step, edges, counts))
    for artifact_name, artifact in run.artifacts.items():
        stored.artifacts[artifact_name] = _artifact_bytes(artifact.uri)
    return stored


def _artifact_bytes(uri: str) -> bytes:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://")).read_bytes()
