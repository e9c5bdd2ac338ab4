"""AIM's UI (``aim up``) over the repository shows the Tracelet run right after ``stop()``: the page a user opens."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import AIM_CLI, free_port, stop_group, wait_listening

from tracelet.run import Run
from tracelet_aim import AimBackend


def _get_json(url: str, deadline: float) -> Any:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_aim_up_lists_the_runs_metrics_and_params(tracelet_start: Callable[..., Run], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run = tracelet_start(project="ui", name="ui-run", backends=["aim"], config={"aim": {"repo": str(repo)}})
    for step in range(5):
        run.log_metric("train/loss", 1.0 / (step + 1), step=step)
        run.log_metric("val/loss", 2.0 / (step + 1), step=step)
    run.log_params({"optim": {"lr": 0.01}})
    assert run.stop(timeout=60)
    backend = run.get_plugin("aim")
    assert isinstance(backend, AimBackend)

    port = free_port()
    log = tmp_path / "aim-up.log"
    command = [str(AIM_CLI), "up", "--host", "127.0.0.1", "--port", str(port), "--repo", str(repo), "--workers", "1", "--yes"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        wait_listening(port, process, log)
        info = _get_json(f"http://127.0.0.1:{port}/api/runs/{backend.run_hash}/info/", time.monotonic() + 60)
    finally:
        stop_group(process)
    metrics = sorted((trace["name"], json.dumps(trace["context"])) for trace in info["traces"]["metric"])
    assert metrics == [("loss", '{"subset": "train"}'), ("loss", '{"subset": "val"}')]
    assert info["params"]["hparams"] == {"optim": {"lr": 0.01}}
    assert info["params"]["tracelet"]["status"] == "FINISHED"
    assert (info["props"]["name"], info["props"]["experiment"]["name"], info["props"]["active"]) == ("ui-run", "ui", False)
