"""No ClearML server configured and not offline: one clear line, nothing lost (the spool, then `tracelet replay`).

In fresh processes: ClearML cannot switch a process from offline to online once it has had an offline task.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_conformance import read_stored

_HERE = Path(__file__).parent


def test_unconfigured_online_says_so_once_and_replay_offline_delivers_everything(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TRACELET_", "CLEARML_", "TRAINS_"))}
    env.update(HOME=str(tmp_path), TRACELET_PLUGINS="clearml", TRACELET_STRICT="0")
    done = subprocess.run(
        [sys.executable, str(_HERE / "unconfigured_script.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["delivered"], result["spooled"]) == (False, 51), result
    # one log line says it (core logs each distinct error once, its traceback below it), not ClearML's own text
    lines = [line for line in done.stderr.splitlines() if line.startswith("backend hook failed") and "clearml" in line]
    assert len(lines) == 1, done.stderr
    assert "no ClearML server configured" in lines[0]
    assert "It seems ClearML is not configured" not in done.stderr
    assert "clearml-init" in lines[0] and "CLEARML_OFFLINE_MODE=1" in lines[0] and "tracelet replay" in lines[0]

    env["TRACELET_CLEARML_OFFLINE"] = "true"
    spool = str(Path(tmp_path, result["spool"]))
    replay = [str(Path(sys.executable).parent / "tracelet"), "replay", spool]
    done = subprocess.run(replay, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    again = subprocess.run(replay, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr

    offline = tmp_path / ".clearml" / "cache" / "offline"
    stored = [read_stored(path.name, tmp_path) for path in offline.iterdir() if path.is_dir()]
    assert len(stored) == 1  # the second replay sent nothing
    assert stored[0].tags.get("tracelet.run_id") == result["run_id"]
    assert [(step, value) for step, value, _ in stored[0].metrics["train/loss"]] == [(step, step * 0.5) for step in range(50)]
    assert stored[0].params == {"lr": "0.1"}
    assert stored[0].status == "FINISHED"
