"""Run by test_process.py: a training loop that waits to be sent SIGTERM."""

from __future__ import annotations

import sys
import time

import tracelet

run = tracelet.start(project="tests", backends=["clearml"])
for step in range(100):
    run.log_metric("train/loss", step * 1.0, step=step)
assert run.flush(60)
print("TASK", run.get_plugin("clearml").task_id, flush=True)
sys.stdout.flush()
while True:
    time.sleep(0.1)
