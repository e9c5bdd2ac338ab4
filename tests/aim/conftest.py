"""Fixtures for the AIM backend's tests: real AIM repositories in temp dirs, no mocks.

- HOME points at a temp dir for the whole session (aim writes nothing there
  today; it is the house rule for every tool's settings).
- ``tracelet_plugins``: every run a test starts loads the ``aim`` plugin.
- ``aim_server``: a real ``aim server`` (AIM's remote tracking server) on
  127.0.0.1 with a temp repository, one per session, stopped with its whole
  process group.
- ``read_aim_run(repo, run_hash)``: the run read back through aim's own SDK
  (``aim.Repo(path).get_run``), into the conformance suite's neutral form.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from tracelet.testing.conformance import StoredHistogram, StoredImage, StoredRun, decode_png
from tracelet_aim.backend import PARAMS_KEY, TAGS_KEY, TRACELET_KEY
from tracelet_aim.mapping import HISTOGRAM_KIND, KIND_KEY, REPEAT_KEY, flatten_params, histogram_edges, tracelet_name


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.delenv("AIM_REPO_NAME", raising=False)
        yield home


@pytest.fixture
def tracelet_plugins() -> Sequence[str]:
    return ["aim"]


_SERVER_START_TIMEOUT = 90.0
AIM_CLI = Path(sys.executable).with_name("aim")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aim exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"aim not listening after {_SERVER_START_TIMEOUT} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (aim runs uvicorn in a child), SIGKILL what is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@attrs.define
class AimServer:
    """A running ``aim server``: its ``uri`` (``aim://127.0.0.1:PORT``) and the directory of its repository."""

    uri: str
    repo: Path
    port: int
    processes: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def start(self) -> None:
        log = self.repo.parent / f"server-{len(self.processes)}.log"
        command = [str(AIM_CLI), "server", "--repo", str(self.repo), "--host", "127.0.0.1", "--port", str(self.port), "--yes"]
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.repo)
        self.processes.append(process)
        wait_listening(self.port, process, log)

    def stop(self) -> None:
        stop_group(self.processes[-1])


@pytest.fixture(scope="session")
def aim_server(tmp_path_factory: pytest.TempPathFactory, _isolated_home: Path) -> Iterator[AimServer]:
    """A real ``aim server`` on 127.0.0.1 over a temp repository, one per session."""
    root = tmp_path_factory.mktemp("aim-server")
    repo = root / "repo"
    repo.mkdir()
    port = free_port()
    server = AimServer(f"aim://127.0.0.1:{port}", repo, port)
    try:
        server.start()
        yield server
    finally:
        # aim closes its clients at interpreter exit, each talking to its server: close them while it answers.
        from aim.ext.cleanup import AutoClean

        AutoClean._cleanup()
        for process in server.processes:
            stop_group(process)


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
