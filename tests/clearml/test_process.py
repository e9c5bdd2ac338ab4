"""SIGTERM to a real training process: core's handler stops the run KILLED, and ClearML has every point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from test_conformance import read_stored

_HERE = Path(__file__).parent


def test_sigterm_ends_the_task_killed_with_every_point(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TRACELET_", "CLEARML_", "TRAINS_"))}
    env.update(HOME=str(tmp_path), TRACELET_PLUGINS="clearml", CLEARML_OFFLINE_MODE="1")
    process = subprocess.Popen(
        [sys.executable, str(_HERE / "sigterm_script.py")], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = ""
        while not line.startswith("TASK "):  # ClearML prints its own lines on stdout first
            line = process.stdout.readline()
            assert line, "the script ended before its task started"
        task_id = line.split()[1]
        assert task_id.startswith("offline-"), task_id
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stored = read_stored(task_id, tmp_path)
    assert stored.status == "KILLED"
    assert [(step, value) for step, value, _ in stored.metrics["train/loss"]] == [(step, step * 1.0) for step in range(100)]
    assert (tmp_path / ".clearml" / "cache" / "offline" / f"{task_id}.zip").is_file()  # ClearML closed the session
