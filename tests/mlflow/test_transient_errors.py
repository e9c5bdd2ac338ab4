"""A store that fails once: every record still reaches MLflow exactly once (issue 9, case 6).

The failure is real: the test holds an exclusive lock on MLflow's sqlite
database (``BEGIN EXCLUSIVE`` from its own connection), so MLflow's calls
fail with "database is locked" after sqlite's busy timeout, exactly as when
another process holds the database. Once the backend has failed (core counts
a retry), the lock is released and core's retry must deliver what the failed
call did not. Everything is read back with ``MlflowClient``.

Images, texts and histograms fail halfway: their files are written to the
artifact directory (no database involved once the run's artifact repository
is known), then the tag or the summary metrics of the same hook call fail.
The retry must replace those files, not add a second copy.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from tracelet.records import Param
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend

Start = Callable[..., Run]
Finish = Callable[..., MlflowBackend]


@contextmanager
def _locked(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on the sqlite store of ``uri``: nobody else reads or writes it meanwhile."""
    connection = sqlite3.connect(uri.removeprefix("sqlite:///"), isolation_level=None, timeout=60)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def _started(start_mlflow: Start, uri: str) -> tuple[Run, MlflowBackend]:
    run = start_mlflow(uri)
    assert run.flush(timeout=60)  # the MLflow run exists before the store fails
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    return run, backend


def _fail_once(run: Run, uri: str, log: Callable[[], None]) -> None:
    """Call ``log`` while the store is locked; release it once the backend's call has failed."""
    before = run.stats()["mlflow"].retries
    with _locked(uri):
        log()
        deadline = time.monotonic() + 60
        while run.stats()["mlflow"].retries == before and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = run.stats()["mlflow"]
        assert stats.retries > before, stats
    assert stats.last_error is not None and "database is locked" in stats.last_error, stats


def test_params_after_a_failed_batch(sqlite_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run, backend = _started(start_mlflow, sqlite_uri)
    run.log_params({"lr": 0.1, "bad key!": "a"})
    assert run.flush(timeout=60)

    def log() -> None:
        run.log_params({"lr": 0.2, "bad key!": "b", "layers": 3})  # two changed values (.v2) and a new one
        run.log_record(Param("x" * 300, "long"))  # a renamed (shortened) key

    _fail_once(run, sqlite_uri, log)
    run.log_params({"lr": 0.3})  # after the retry: .v3, not a second .v2
    finish(run)

    params = MlflowClient(sqlite_uri).get_run(backend.run_id).data.params
    long_key = backend.renamed["param:" + "x" * 300]
    assert params == {
        "lr": "0.1",
        "lr.v2": "0.2",
        "lr.v3": "0.3",
        "bad key_": "a",
        "bad key_.v2": "b",
        "layers": "3",
        long_key: "long",
    }
    # Each adjusted record counted once, though the failed call had seen them too.
    assert backend.adjustments == {"renamed": 3, "param_changed": 3}


def test_tags_after_a_failed_batch(sqlite_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run, backend = _started(start_mlflow, sqlite_uri)
    _fail_once(run, sqlite_uri, lambda: run.set_tags({"team": "vision", "bad tag!": "x", "long": "v" * 9000}))
    finish(run)

    tags = MlflowClient(sqlite_uri).get_run(backend.run_id).data.tags
    assert (tags["team"], tags["bad tag_"], tags["long"]) == ("vision", "x", "v" * 8000)
    assert backend.adjustments == {"renamed": 1, "tag_truncated": 1}


def test_metrics_after_a_failed_batch(sqlite_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run, backend = _started(start_mlflow, sqlite_uri)
    run.log_metric("loss", 1.0, step=0)
    assert run.flush(timeout=60)
    _fail_once(run, sqlite_uri, lambda: [run.log_metric("loss", 1.0 / step, step=step) for step in range(1, 300)])
    finish(run)

    history = MlflowClient(sqlite_uri).get_metric_history(backend.run_id, "loss")
    assert sorted((point.step, point.value) for point in history) == [(0, 1.0)] + [(step, 1.0 / step) for step in range(1, 300)]


def test_artifacts_after_a_failed_upload(sqlite_uri: str, start_mlflow: Start, finish: Finish, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "checkpoints").mkdir(parents=True)
    (source / "model.bin").write_bytes(b"weights")
    (source / "checkpoints" / "epoch-1.pt").write_bytes(b"epoch one")
    run, backend = _started(start_mlflow, sqlite_uri)

    def log() -> None:
        run.log_artifact(source / "model.bin", name="models/best.bin")
        run.log_artifact(source / "checkpoints")

    _fail_once(run, sqlite_uri, log)
    finish(run)

    back = Path(download_artifacts(run_id=backend.run_id, dst_path=str(tmp_path / "back"), tracking_uri=sqlite_uri))
    assert {path.relative_to(back).as_posix(): path.read_bytes() for path in back.rglob("*") if path.is_file()} == {
        "models/best.bin": b"weights",
        "checkpoints/epoch-1.pt": b"epoch one",
    }


def test_media_after_a_call_that_failed_halfway(sqlite_uri: str, start_mlflow: Start, finish: Finish, tmp_path: Path) -> None:
    run, backend = _started(start_mlflow, sqlite_uri)
    run.log_text("notes", "before", step=0)
    assert run.flush(timeout=60)  # MLflow now knows the run's artifact directory: files go in while the db is locked
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)

    def log() -> None:
        run.log_image("samples/rgb", pixels, step=3)
        run.log_image("samples/rgb", pixels, step=3)  # a second image logged alike: kept as a second file
        run.log_text("notes", "first", step=1)
        run.log_text("notes", "again", step=1)
        run.log_histogram("weights", [1.0, 2.0, 3.0], step=1, bins=2)

    _fail_once(run, sqlite_uri, log)
    run.log_text("notes", "later", step=1)  # after the retry: the third file of step 1
    finish(run)

    client = MlflowClient(sqlite_uri)
    back = Path(download_artifacts(run_id=backend.run_id, dst_path=str(tmp_path / "back"), tracking_uri=sqlite_uri))
    files = sorted(path.relative_to(back).as_posix() for path in back.rglob("*") if path.is_file())
    images = [name for name in files if name.startswith("images/")]
    assert len(images) == 4, files  # two images, each a .png and a +compressed.webp, once
    assert sum(name.endswith(".png") for name in images) == 2
    assert all(name.startswith("images/samples~rgb+step+3+timestamp+") for name in images)
    assert [name for name in files if not name.startswith("images/")] == [
        "histograms/weights/step-0000000001.json",
        "text/notes/step-0000000000.txt",
        "text/notes/step-0000000001-2.txt",
        "text/notes/step-0000000001-3.txt",
        "text/notes/step-0000000001.txt",
    ]
    texts = {name: (back / name).read_text() for name in files if name.startswith("text/")}
    assert list(texts.values()) == ["before", "again", "later", "first"]
    assert client.get_run(backend.run_id).data.tags["mlflow.loggedImages"] == "True"
    summary = client.get_metric_history(backend.run_id, "weights/count")
    assert [(point.step, point.value) for point in summary] == [(1, 3.0)]
