"""Run by test_unreachable.py: ClearML online, its server a closed port on 127.0.0.1."""

from __future__ import annotations

import json
import os
import sys

import tracelet

run = tracelet.start(project="tests", backends=["clearml"], retry_attempts=1, spool_after=0.2)
for step in range(50):
    run.log_metric("train/loss", step * 0.5, step=step)
run.set_tags({"phase": "unreachable"})
delivered = run.stop(timeout=3)
stats = run.stats()["clearml"]
json.dump({"delivered": delivered, "spooled": stats.spooled, "run_id": run.id, "spool": str(run.settings.spool_dir)}, sys.stdout)
sys.stdout.flush()
os._exit(0)  # ClearML's own retries against the closed port would hold the interpreter's exit
