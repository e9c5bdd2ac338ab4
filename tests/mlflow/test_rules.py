"""MLflow's rules on names and values: what the backend changes, counts and warns about."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_metric_name, _validate_param, _validate_param_name, _validate_tag_name

from tracelet.run import Run
from tracelet_mlflow import MlflowBackend
from tracelet_mlflow.naming import KeyMapper, is_valid_image_key, is_valid_key, sanitise_image_key, sanitise_key

Start = Callable[..., Run]
Finish = Callable[..., MlflowBackend]

TRICKY_NAMES = [
    "loss@val",
    "acc[top-1]",
    "a//b",
    "/leading",
    "trailing/",
    "./dot",
    "a/./b",
    "../escape",
    "a/../b",
    "...",
    "..hidden",
    "",
    "tab\there",
    "newline\n",
    "percent%",
    "hash#1",
    "ünïcode λ",
    "x" * 300,
    "y/" * 200,
]


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_sanitised_keys_pass_mlflows_own_validation(name: str) -> None:
    key = sanitise_key(name)
    assert is_valid_key(key)
    assert len(key) <= 250
    for validate in (_validate_metric_name, _validate_param_name, _validate_tag_name):
        validate(key)
    image_key = sanitise_image_key(name)
    assert is_valid_image_key(image_key)
    assert image_key.isascii()


@pytest.mark.parametrize("key", ["loss", "train/loss", "a.b-c d:e", "ünïcode", "z" * 250])
def test_valid_keys_are_kept(key: str) -> None:
    assert sanitise_key(key) == key
    _validate_metric_name(key)


@pytest.mark.parametrize("key", ["a@b", "a//b", "../x", "x/", "", "z" * 251])
def test_invalid_keys_are_what_mlflow_refuses(key: str) -> None:
    assert not is_valid_key(key)
    with pytest.raises(MlflowException):
        _validate_param(key, "value")  # the name rules and the key's length


def test_key_mapper_keeps_names_apart() -> None:
    renames: list[tuple[str, str]] = []
    mapper = KeyMapper(sanitise_key, lambda name, key: renames.append((name, key)))
    first, second, plain = mapper("a@b"), mapper("a#b"), mapper("a_b")
    assert first == "a_b"
    assert second.startswith("a_b_")
    assert len(second) == len("a_b_") + 8
    assert plain.startswith("a_b_")
    assert plain != second
    assert len({first, second, plain}) == 3
    assert mapper("a#b") == second  # stable for the run
    long_one, long_two = mapper("q" * 300 + "1"), mapper("q" * 300 + "2")
    assert long_one != long_two
    assert len(long_one) == len(long_two) == 250
    assert [name for name, _ in renames] == ["a@b", "a#b", "a_b", "q" * 300 + "1", "q" * 300 + "2"]


def test_renamed_metrics_params_tags(
    sqlite_uri: str, start_mlflow: Start, finish: Finish, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tracelet")
    run = start_mlflow(sqlite_uri)
    for step in range(3):
        run.log_metric("loss@val", float(step), step=step)
        run.log_metric("loss#val", 10.0 + step, step=step)
    run.log_params({"batch size (per GPU)": 32})
    run.set_tags({"owner's name": "ada"})
    backend = finish(run)

    client = MlflowClient(sqlite_uri)
    second_key = backend.renamed["metric:loss#val"]
    assert backend.renamed["metric:loss@val"] == "loss_val"
    assert second_key.startswith("loss_val_")
    assert [(p.step, p.value) for p in client.get_metric_history(backend.run_id, "loss_val")] == [(0, 0.0), (1, 1.0), (2, 2.0)]
    assert [(p.step, p.value) for p in client.get_metric_history(backend.run_id, second_key)] == [(0, 10.0), (1, 11.0), (2, 12.0)]
    data = client.get_run(backend.run_id).data
    assert data.params["batch size _per GPU_"] == "32"
    assert data.tags["owner_s name"] == "ada"
    assert backend.adjustments["renamed"] == 6 + 1 + 1  # counted per record
    warnings = [record.getMessage() for record in caplog.records if "renamed" in record.getMessage()]
    assert len(warnings) == 4  # once per name
    assert any("loss@val" in message and "loss_val" in message for message in warnings)


def test_param_changed_value_is_kept_under_a_versioned_key(sqlite_uri: str, start_mlflow: Start, finish: Finish) -> None:
    run = start_mlflow(sqlite_uri)
    run.log_params({"lr": 0.1, "epochs": 3})
    run.log_params({"lr": 0.1})  # same value again: nothing to do
    run.log_params({"lr": 0.05})
    run.log_params({"lr": 0.05, "epochs": 3})
    run.log_params({"lr": 0.1})  # back to the first value: still a change
    backend = finish(run)

    params = MlflowClient(sqlite_uri).get_run(backend.run_id).data.params
    assert params == {"lr": "0.1", "lr.v2": "0.05", "lr.v3": "0.1", "epochs": "3"}
    assert backend.adjustments["param_changed"] == 2
    assert run.stats()["mlflow"].failed == 0


def test_long_values_are_truncated_and_kept_whole_as_artifacts(
    sqlite_uri: str, start_mlflow: Start, finish: Finish, tmp_path: Path
) -> None:
    long_param = "p" * 5000 + "q" * 2000
    long_tag = "t" * 9000 + "!"
    run = start_mlflow(sqlite_uri, artifact_path="extra")
    run.log_params({"prompt": long_param, "short": "ok"})
    run.set_tags({"description": long_tag})
    backend = finish(run)

    data = MlflowClient(sqlite_uri).get_run(backend.run_id).data
    assert data.params["prompt"] == long_param[:6000]
    assert data.params["short"] == "ok"
    assert data.tags["description"] == long_tag[:8000]
    back = Path(download_artifacts(run_id=backend.run_id, artifact_path="extra", dst_path=str(tmp_path), tracking_uri=sqlite_uri))
    assert (back / "params" / "prompt.txt").read_text("utf-8") == long_param
    assert (back / "tags" / "description.txt").read_text("utf-8") == long_tag
    assert dict(backend.adjustments) == {"param_truncated": 1, "tag_truncated": 1}


def test_a_missing_artifact_is_refused_at_the_door_and_the_others_are_uploaded(
    sqlite_uri: str, start_mlflow: Start, tmp_path: Path
) -> None:
    present = tmp_path / "present.txt"
    present.write_text("here")
    run = start_mlflow(sqlite_uri)
    run.log_artifact(tmp_path / "absent.txt")
    run.log_artifact(present)
    assert run.stop(timeout=60) is True  # the absent file never reached MLflow: its batch is whole
    stats = run.stats()
    assert (stats["mlflow"].failed, stats["mlflow"].delivered) == (0, 1)
    assert stats.rejected == {"artifact:absent.txt": 1}
    backend = run.get_plugin("mlflow")
    assert isinstance(backend, MlflowBackend)
    listed = [item.path for item in MlflowClient(sqlite_uri).list_artifacts(backend.run_id)]
    assert listed == ["present.txt"]
