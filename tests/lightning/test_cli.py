"""LightningCLI (jsonargparse) capture: a real CLI script with a config file and overrides, run as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import yaml

from tracelet.run import Run

SCRIPT = Path(__file__).parent / "cli_script.py"

CONFIG = """
trainer:
  max_epochs: 3
  limit_train_batches: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
model:
  hidden: 8
  api_key: sk-secret-123
data:
  batch_size: 4
  widths: [3, 5]
"""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Lightning's saved config as core flattens params: nested dicts dotted, lists as JSON, {} as "{}"."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, dict):
            flat[f"{prefix}{key}"] = "{}"
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = json.dumps(value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _run_cli(tmp_path: Path, uri: str) -> dict[str, Any]:
    (tmp_path / "config.yaml").write_text(CONFIG)
    env = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    env.update(
        HOME=str(tmp_path),
        TRACELET_STRICT="1",
        TRACELET_PLUGINS="recording,mlflow,lightning",
        TRACELET_BACKENDS="recording,mlflow",
        TRACELET_MLFLOW_TRACKING_URI=uri,
        TRACELET_MLFLOW_EXPERIMENT="cli",
        TRACELET_SPOOL_DIR=str(tmp_path / "spool"),
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    out = tmp_path / "out.json"
    argv = ["fit", "--config", "config.yaml", "--model.learning_rate", "0.2", "--trainer.max_epochs", "1"]
    argv += ["--trainer.default_root_dir", str(tmp_path / "logs")]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_lightning_cli_config_is_captured_equal_to_lightnings_saved_config(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = _run_cli(tmp_path, uri)
    saved_text = Path(result["config_path"]).read_text()
    saved = yaml.safe_load(saved_text)
    # The overrides and the config file reached Lightning's saved config ...
    assert saved["model"] == {"learning_rate": 0.2, "hidden": 8, "api_key": "sk-secret-123"}
    assert saved["trainer"]["max_epochs"] == 1 and saved["data"]["widths"] == [3, 5]
    # ... and the params are its values, every one, the secret masked by core's redaction.
    expected = _flatten(saved) | {"model.api_key": "***"}
    params = result["params"]
    assert {name: params.get(name, "<absent>") for name in expected} == expected
    assert len(expected) > 40  # the whole config: trainer, model, data, optimizer, ckpt_path ...
    # The file Lightning wrote is the artifact, with the secret masked and nothing else changed.
    assert result["artifacts"]["lightning/config.yaml"] == saved_text.replace("sk-secret-123", "***")
    assert "sk-secret-123" not in json.dumps(result["params"]) + json.dumps(result["artifacts"])

    # End to end into MLflow, read back with MlflowClient.
    client = mlflow.MlflowClient(tracking_uri=uri)
    (stored,) = client.search_runs([client.get_experiment_by_name("cli").experiment_id])
    assert stored.data.tags["tracelet.run_id"] == result["run"]
    assert {name: stored.data.params.get(name) for name in expected} == {name: str(value) for name, value in expected.items()}
    assert [a.path for a in client.list_artifacts(stored.info.run_id, "lightning")] == ["lightning/config.yaml"]
    local = mlflow.artifacts.download_artifacts(
        run_id=stored.info.run_id, artifact_path="lightning/config.yaml", tracking_uri=uri
    )
    assert Path(local).read_text() == saved_text.replace("sk-secret-123", "***")


def test_cli_patches_are_restored_identity_equal(tracelet_start: Callable[..., Run]) -> None:
    from lightning.pytorch import cli

    originals = (vars(cli.LightningCLI)["instantiate_classes"], vars(cli.SaveConfigCallback)["setup"])
    run = tracelet_start(backends=["recording"])
    assert vars(cli.LightningCLI)["instantiate_classes"] is not originals[0]
    assert vars(cli.SaveConfigCallback)["setup"] is not originals[1]
    assert run.stop(timeout=30)
    assert (vars(cli.LightningCLI)["instantiate_classes"], vars(cli.SaveConfigCallback)["setup"]) == originals
    run = tracelet_start(backends=["recording"], config={"lightning": {"capture_cli": False}})
    assert vars(cli.LightningCLI)["instantiate_classes"] is originals[0]
    assert run.stop(timeout=30)
