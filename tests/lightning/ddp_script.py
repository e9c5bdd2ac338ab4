"""Run by test_ddp as a script: Lightning re-launches it once per extra rank (DDP, gloo, CPU).

Arguments: the output directory and an MLflow tracking URI. Each rank starts
Tracelet with the recording and MLflow backends, as a user's script would,
and writes ``<out>/rank-<rank>.json``: the run it got (an inert run has no id
and no plugin) and what its recording backend received.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lightning_models import data, lightning, regression_module, trainer

import tracelet

out, uri = Path(sys.argv[1]), sys.argv[2]
# Rank 1 is this same script, started by Lightning's launcher with LOCAL_RANK=1 in its environment:
# core's rank policy sees it here, before anything is created, and returns an inert run.
run = tracelet.start(backends=["recording", "mlflow"], config={"mlflow": {"tracking_uri": uri, "experiment": "ddp"}})
pl = lightning("lightning.pytorch")
csv_logger = pl.loggers.CSVLogger(str(out / "csv"), name="truth", version=0)
fitted = trainer("lightning.pytorch", out, logger=csv_logger, strategy="ddp", devices=2, max_epochs=1)
fitted.fit(regression_module("lightning.pytorch"), data(), data(seed=1))
assert run.stop(timeout=60)
report: dict[str, object] = {"run_id": run.info.id, "plugins": list(run.info.plugins), "metrics": [], "params": {}}
if "recording" in run.info.plugins:
    recording = run.get_plugin("recording")
    report["metrics"] = [[m.name, m.step, m.value] for m in recording.metrics]  # type: ignore[attr-defined]
    report["params"] = recording.params  # type: ignore[attr-defined]
(out / f"rank-{fitted.global_rank}.json").write_text(json.dumps(report))
