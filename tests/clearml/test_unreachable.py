"""ClearML unreachable (online, ``api_server`` a closed port on 127.0.0.1): ``stop()`` returns by its deadline,
the records wait in the spool, and ``tracelet replay`` (offline) delivers them once. In fresh processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_conformance import read_stored

_HERE = Path(__file__).parent


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_stop_by_deadline_then_replay_delivers_once(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TRACELET_", "CLEARML_", "TRAINS_"))}
    env.update(
        HOME=str(tmp_path),
        TRACELET_PLUGINS="clearml",
        TRACELET_STRICT="0",
        CLEARML_API_HOST=url,
        CLEARML_WEB_HOST=url,
        CLEARML_FILES_HOST=url,
        CLEARML_API_ACCESS_KEY="tracelet-test",
        CLEARML_API_SECRET_KEY="tracelet-test",
    )
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(_HERE / "unreachable_script.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 60
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["delivered"], result["spooled"]) == (False, 51), (result, done.stderr)

    for variable in (
        "CLEARML_API_HOST",
        "CLEARML_WEB_HOST",
        "CLEARML_FILES_HOST",
        "CLEARML_API_ACCESS_KEY",
        "CLEARML_API_SECRET_KEY",
    ):
        del env[variable]
    env["TRACELET_CLEARML_OFFLINE"] = "true"
    replay = [str(Path(sys.executable).parent / "tracelet"), "replay", str(tmp_path / result["spool"])]
    for _ in range(2):  # the second replay sends nothing
        again = subprocess.run(replay, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
    offline = tmp_path / ".clearml" / "cache" / "offline"
    stored = [read_stored(path.name, tmp_path) for path in offline.iterdir() if path.is_dir()]
    assert len(stored) == 1
    assert stored[0].tags.get("tracelet.run_id") == result["run_id"]
    assert stored[0].tags.get("phase") == "unreachable"
    assert [(step, value) for step, value, _ in stored[0].metrics["train/loss"]] == [(step, step * 0.5) for step in range(50)]
    assert stored[0].status == "FINISHED"
