"""Run by test_reliability as a process to kill: log to AIM through Tracelet, say so, wait for SIGTERM.

Arguments: repository directory, points per half. The first half is flushed
(in AIM for sure); the second is logged right before the script reports
ready, so the signal finds it on its way.
"""

from __future__ import annotations

import sys
import time

import tracelet

repo, half = sys.argv[1], int(sys.argv[2])
run = tracelet.start(project="sigterm", backends=["aim"], config={"aim": {"repo": repo}})
for step in range(half):
    tracelet.log_metric("train/loss", 1.0 / (step + 1), step)
assert run.flush(timeout=60)
for step in range(half, 2 * half):
    tracelet.log_metric("train/loss", 1.0 / (step + 1), step)
tracelet.log_params({"phase": "second"})
print("ready", flush=True)
time.sleep(120)  # the test's SIGTERM ends this
sys.exit("not killed")
