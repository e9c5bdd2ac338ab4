"""Run by test_unconfigured.py in a fresh process: ClearML online with no server configured."""

from __future__ import annotations

import json
import sys

import tracelet

run = tracelet.start(project="tests", backends=["clearml"], retry_attempts=2, retry_base=0.01, spool_after=0.2)
for step in range(50):
    run.log_metric("train/loss", step * 0.5, step=step)
run.log_params({"lr": 0.1})
delivered = run.stop(timeout=3)
stats = run.stats()["clearml"]
json.dump({"delivered": delivered, "spooled": stats.spooled, "run_id": run.id, "spool": str(run.settings.spool_dir)}, sys.stdout)
