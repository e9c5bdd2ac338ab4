"""Run by test_offline_resume as a training job that a scheduler preempts and restarts.

Arguments: tracking URI, experiment, steps. The job's identity comes from the
environment (``TRACELET_RUN_ID``), as a job script derives it from its
scheduler's job id. It continues from its checkpoint (the next step, in
``checkpoint.json``); each step logs its loss, then checkpoints, with SIGTERM
held off for that moment, as a real training step's save is (a preemption
then lands between steps).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import tracelet

uri, experiment, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
checkpoint = Path("checkpoint.json")
first = json.loads(checkpoint.read_text())["next"] if checkpoint.exists() else 0
run = tracelet.start(project=experiment, backends=["mlflow"], config={"mlflow": {"tracking_uri": uri}})
tracelet.log_params({"lr": 0.01, "steps": steps})
print(f"started at {first}", flush=True)
for step in range(first, steps):
    time.sleep(0.01)  # the step's work
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    tracelet.log_metric("loss", 1.0 / (step + 1), step)
    temporary = checkpoint.with_suffix(".tmp")
    temporary.write_text(json.dumps({"next": step + 1}))
    os.replace(temporary, checkpoint)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if step % 50 == 0:
        print(f"step {step}", flush=True)
run.stop()
print("done", flush=True)
