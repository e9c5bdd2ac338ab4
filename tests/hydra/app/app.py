"""A real ``@hydra.main`` app for the tests, run as a subprocess.

``APP_TRACELET=inside``: ``tracelet.start()``/``stop()`` in the task function (a run per job);
``APP_TRACELET=outside``: one run started before ``@hydra.main`` runs, stopped after it.
With the recording backend, what each run received is appended as a JSON line to ``APP_RECORDS``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

import tracelet

MODE = os.environ["APP_TRACELET"]


def dump(run: Any) -> None:
    backend = run.get_plugin("recording") if "recording" in run.info.backends else None
    assert run.stop(timeout=60)
    if backend is None:
        return
    artifacts: dict[str, dict[str, str]] = {}
    for record in backend.records:
        if type(record).__name__ == "Artifact":
            files = sorted(Path(record.path).iterdir()) if Path(record.path).is_dir() else [Path(record.path)]
            artifacts[record.name] = {path.name: path.read_text() for path in files}
    line = {"run": run.id, "params": backend.params, "tags": backend.tags, "artifacts": artifacts}
    with open(os.environ["APP_RECORDS"], "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    if MODE == "inside":
        run = tracelet.start()
        tracelet.log_metric("loss", float(cfg.optimizer.lr))
        dump(run)
    else:
        tracelet.log_metric("loss", float(cfg.optimizer.lr))
    return float(cfg.optimizer.lr)


if __name__ == "__main__":
    if MODE == "outside":
        outer = tracelet.start()
        main()  # hydra.main's wrapper exits the process only on errors here
        dump(outer)
    else:
        main()
