"""Run by test_reliability as a process to kill: log to MLflow through Tracelet, say so, wait for SIGTERM.

Arguments: tracking URI, experiment, points per half. The first half is flushed
(in MLflow for sure); the second is logged right before the script reports
ready, so the signal finds it on its way.
"""

from __future__ import annotations

import sys
import time

import tracelet

uri, experiment, half = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = tracelet.start(project=experiment, backends=["mlflow"], config={"mlflow": {"tracking_uri": uri}})
for step in range(half):
    tracelet.log_metric("loss", 1.0 / (step + 1), step)
assert run.flush(timeout=60)
for step in range(half, 2 * half):
    tracelet.log_metric("loss", 1.0 / (step + 1), step)
tracelet.log_params({"phase": "second"})
print("ready", flush=True)
time.sleep(120)  # the test's SIGTERM ends this
sys.exit("not killed")
