"""Credentials in MLflow URIs and records never leave the process (issue 9, case 11).

A real process logs to a real ``mlflow server`` through a tracking URI with
``user:password@`` in it (the password holding an ``@``), plants secrets in
records, spools part of its run, and fails to reach a second URI with the
same credentials. The secret must not appear on its stderr or stdout (but for
``last_error``, checked through :func:`tracelet.redact.scrub`), in any byte
of the spool directory, in what MLflow stored, or in ``tracelet config``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _free_port
from mlflow import MlflowClient

from tracelet import cli
from tracelet.redact import MASK, scrub

SECRET = "hunter2-7f3a9c"
PASSWORD = f"p@ss-{SECRET}"  # an "@" in the password: the whole of it must go


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://alice:{PASSWORD}@", 1)


def test_credentials_reach_no_output_file_or_store(server_uri: str, tmp_path: Path) -> None:
    working = _with_credentials(server_uri)
    closed = _with_credentials(f"http://127.0.0.1:{_free_port()}")
    environment = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    environment |= {"TRACELET_STRICT": "1", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    script = Path(__file__).with_name("secrets_script.py")
    done = subprocess.run(
        [sys.executable, str(script), working, closed, SECRET],
        capture_output=True,
        cwd=tmp_path,
        env=environment,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    stderr = done.stderr.decode()
    assert "API request to http://127.0.0.1:" in stderr  # MLflow's error, quoting the URI, was logged
    assert "backend hook failed" in stderr
    result = json.loads(done.stdout.decode().splitlines()[-1])
    assert SECRET not in stderr and "alice" not in stderr

    # stats().last_error keeps MLflow's message; the dispatcher stores it through scrub().
    assert result["last_error"] is not None and "http://127.0.0.1:" in scrub(result["last_error"])
    assert SECRET not in scrub(result["last_error"]) and "alice" not in scrub(result["last_error"])

    spool = tmp_path / ".tracelet" / "spool" / result["run"] / "mlflow"
    files = [path for path in spool.rglob("*") if path.is_file()]
    assert any(path.suffix == ".seg" for path in files), files  # the deadline did spool part of the run
    meta = json.loads((spool / "meta.json").read_text())
    port = server_uri.rsplit(":", 1)[1]
    assert meta["backend_run"]["url"].startswith(f"http://127.0.0.1:{port}/#/experiments/")
    for path in files:
        assert SECRET.encode() not in path.read_bytes() and b"alice" not in path.read_bytes(), path

    stored = MlflowClient(server_uri).get_run(result["run_id"])
    assert stored.data.params == {
        "optimiser": f'[{{"name": "db", "password": "{MASK}"}}]',
        "url": server_uri,
    }


def test_config_masks_secret_keys_and_url_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRACELET_MLFLOW_TRACKING_URI", f"http://alice:{PASSWORD}@mlflow.example.com:5000")
    monkeypatch.setenv("TRACELET_MLFLOW_TAGS", f"team=vision,api_token={SECRET}")
    assert cli.main(["config"]) == 0
    output = capsys.readouterr().out
    assert SECRET not in output and "alice" not in output
    rows = {line.split()[0]: line for line in output.splitlines()[1:]}
    assert "'http://mlflow.example.com:5000'" in rows["mlflow.tracking_uri"]
    assert f"'api_token': '{MASK}'" in rows["mlflow.tags"] and "'team': 'vision'" in rows["mlflow.tags"]
