"""Every record type reaches MLflow exactly, on the sqlite store and through a real server."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from PIL import Image as PILImage

from tracelet import names
from tracelet.media import encode_png
from tracelet.records import Figure, Image
from tracelet.run import Run
from tracelet_mlflow import MlflowBackend

Start = Callable[..., Run]
Finish = Callable[..., MlflowBackend]

BASE_TIME = 1_700_000_000.0


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float, int]]:
    points = client.get_metric_history(run_id, key)
    return sorted((point.step, point.value, point.timestamp) for point in points)


def test_metrics_keep_every_step_value_and_timestamp(store_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run = start_mlflow(store_uri)
    expected: dict[str, list[tuple[int, float, int]]] = {"train/loss": [], "val/acc": []}
    base_ms = int(BASE_TIME) * 1000
    for index in range(2500):  # more than two log_batch requests of 1000
        # Seconds -> milliseconds rounds to the nearest: +0.3 ms rounds down, +0.7 ms up.
        timestamp = BASE_TIME + index * 0.011 + 0.0003
        run.log_metric("train/loss", 1.0 / (index + 1), step=index, timestamp=timestamp)
        expected["train/loss"].append((index, 1.0 / (index + 1), base_ms + index * 11))
        if index % 100 == 0:
            run.log_metric("val/acc", index / 2500, step=index // 100, timestamp=timestamp + 0.0004)
            expected["val/acc"].append((index // 100, index / 2500, base_ms + index * 11 + 1))
    run.log_metric("negative_step", -1.5, step=-3, timestamp=BASE_TIME)
    backend = finish(run)

    client = MlflowClient(store_uri)
    for key, points in expected.items():
        assert history(client, backend.run_id, key) == points
    assert history(client, backend.run_id, "negative_step") == [(-3, -1.5, round(BASE_TIME * 1000))]
    assert run.stats()["mlflow"].delivered == 2500 + 25 + 1
    assert dict(backend.adjustments) == {}


def test_non_finite_metrics(store_uri: str, start_mlflow: Start, finish: Finish) -> None:
    """MLflow 3.17.2's SQL store keeps NaN (an is_nan flag) and saves +/-inf as +/-max double."""
    run = start_mlflow(store_uri)
    run.log_metric("odd", math.nan, step=0)
    run.log_metric("odd", math.inf, step=1)
    run.log_metric("odd", -math.inf, step=2)
    run.log_metric("odd", 2.5, step=3)
    backend = finish(run)

    values = [value for _, value, _ in history(MlflowClient(store_uri), backend.run_id, "odd")]
    assert math.isnan(values[0])
    assert values[1:] == [1.7976931348623157e308, -1.7976931348623157e308, 2.5]
    assert backend.adjustments["not_finite"] == 3


def test_params_and_tags(store_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run = start_mlflow(store_uri, tags={"team": "vision"})
    run.log_params({"lr": 0.001, "optimizer": {"name": "adam", "betas": [0.9, 0.99]}, "epochs": 3, "dropout": None, "amp": True})
    run.log_params({f"grid.p{index:03d}": index for index in range(250)})  # more than one request of 100
    run.set_tags({"stage": "test", names.GIT_COMMIT: "0123abcd" * 5, names.GIT_BRANCH: "main"})
    run.set_tags({names.GIT_REMOTE_URL: "https://example.org/repo.git", names.ENV_SCRIPT: "/work/train.py", "stage": "final"})
    backend = finish(run)

    mlflow_run = MlflowClient(store_uri).get_run(backend.run_id)
    params = mlflow_run.data.params
    assert {key: params[key] for key in ("lr", "optimizer.name", "optimizer.betas", "epochs", "dropout", "amp")} == {
        "lr": "0.001",
        "optimizer.name": "adam",
        "optimizer.betas": "[0.9, 0.99]",
        "epochs": "3",
        "dropout": "None",
        "amp": "True",
    }
    assert {key: value for key, value in params.items() if key.startswith("grid.")} == {
        f"grid.p{i:03d}": str(i) for i in range(250)
    }
    assert len(params) == 256
    tags = mlflow_run.data.tags
    assert tags["stage"] == "final"
    assert tags["team"] == "vision"
    assert tags[names.TRACELET_VERSION] == run.info.tracelet_version
    assert tags[names.TRACELET_PLUGINS] == ",".join(run.info.plugins)
    assert tags["tracelet.run_id"] == run.id
    # Well-known collector tags: kept under their own name and copied to MLflow's system tags.
    assert tags[names.GIT_COMMIT] == tags["mlflow.source.git.commit"] == "0123abcd" * 5
    assert tags[names.GIT_BRANCH] == tags["mlflow.source.git.branch"] == "main"
    assert tags[names.GIT_REMOTE_URL] == tags["mlflow.source.git.repoURL"] == "https://example.org/repo.git"
    assert tags[names.ENV_SCRIPT] == tags["mlflow.source.name"] == "/work/train.py"
    assert mlflow_run.info.run_name == run.name
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.start_time == round(run.info.start_time * 1000)
    assert mlflow_run.info.end_time >= mlflow_run.info.start_time
    experiment = MlflowClient(store_uri).get_experiment(mlflow_run.info.experiment_id)
    assert experiment.name == run.project


def test_artifacts_byte_for_byte(store_uri: str, start_mlflow: Start, finish: Finish, tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "checkpoints" / "nested").mkdir(parents=True)
    payloads = {
        "checkpoints/model.bin": bytes(range(256)) * 300,
        "checkpoints/nested/config.json": b'{"layers": 3}\n',
        "weights.tmp": np.random.default_rng(1).bytes(100_000),
        "notes.txt": "résumé ✓\n".encode(),
    }
    for relative, payload in payloads.items():
        (source / relative).write_bytes(payload)

    run = start_mlflow(store_uri, artifact_path="outputs")
    run.log_artifact(source / "notes.txt")
    run.log_artifact(source / "weights.tmp", name="models/best.bin")  # stored under a name unlike the file's
    run.log_artifact(source / "checkpoints")
    backend = finish(run)

    downloaded = Path(download_artifacts(run_id=backend.run_id, dst_path=str(tmp_path / "back"), tracking_uri=store_uri))
    files = {path.relative_to(downloaded).as_posix(): path.read_bytes() for path in downloaded.rglob("*") if path.is_file()}
    assert files == {
        "outputs/notes.txt": payloads["notes.txt"],
        "outputs/models/best.bin": payloads["weights.tmp"],
        "outputs/checkpoints/model.bin": payloads["checkpoints/model.bin"],
        "outputs/checkpoints/nested/config.json": payloads["checkpoints/nested/config.json"],
    }


def test_images_texts_histograms(store_uri: str, start_mlflow: Start, finish: Finish, tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    figure_png = encode_png(Image("x", bytes(range(48)), 4, 4, 3, 0, 0.0))

    run = start_mlflow(store_uri)
    run.log_image("samples/rgb", rgb, step=7)
    run.log_image("grey", grey, step=8)
    run.log_record(Figure("plots/curve", figure_png, 9, BASE_TIME))
    run.log_text("notes", "first", step=1)
    run.log_text("notes", "again at step 1", step=1)  # same name and step: kept as a second file
    run.log_text("notes", "ünïcode", step=2)
    run.log_histogram("weights", [1.0, 2.0, 2.0, 3.0, 10.0], step=5, bins=3)
    backend = finish(run)

    client = MlflowClient(store_uri)
    back = Path(download_artifacts(run_id=backend.run_id, dst_path=str(tmp_path / "back"), tracking_uri=store_uri))

    def image_file(key: str, step: int) -> Path:
        prefix = f"{key.replace('/', '~')}+step+{step}+timestamp+"
        (match,) = [p for p in (back / "images").iterdir() if p.name.startswith(prefix) and p.suffix == ".png"]
        return match

    with PILImage.open(image_file("samples/rgb", 7)) as picture:
        assert picture.mode == "RGB"
        assert np.array_equal(np.asarray(picture), rgb)
    with PILImage.open(image_file("grey", 8)) as picture:
        assert np.array_equal(np.asarray(picture), grey)
    with PILImage.open(image_file("plots/curve", 9)) as picture, PILImage.open(io.BytesIO(figure_png)) as original:
        assert np.array_equal(np.asarray(picture), np.asarray(original))
    assert f"+timestamp+{round(BASE_TIME * 1000)}+" in image_file("plots/curve", 9).name
    assert client.get_run(backend.run_id).data.tags["mlflow.loggedImages"] == "True"

    assert {p.relative_to(back / "text").as_posix(): p.read_text("utf-8") for p in (back / "text").rglob("*.txt")} == {
        "notes/step-0000000001.txt": "first",
        "notes/step-0000000001-2.txt": "again at step 1",
        "notes/step-0000000002.txt": "ünïcode",
    }

    document = json.loads((back / "histograms/weights/step-0000000005.json").read_text())
    assert document["edges"] == [1.0, 4.0, 7.0, 10.0]
    assert document["counts"] == [4.0, 0.0, 1.0]
    assert (document["min"], document["max"], document["sum"], document["count"], document["step"]) == (1.0, 10.0, 18.0, 5, 5)
    assert document["sum_squares"] == 118.0
    summaries = {key: history(client, backend.run_id, f"weights/{key}") for key in ("min", "max", "mean", "std", "count")}
    assert {key: [(step, value) for step, value, _ in points] for key, points in summaries.items()} == {
        "min": [(5, 1.0)],
        "max": [(5, 10.0)],
        "mean": [(5, 3.6)],
        "std": [(5, pytest.approx(math.sqrt(118.0 / 5 - 3.6**2)))],
        "count": [(5, 5.0)],
    }
