"""Run by test_reliability as a process to SIGKILL: log known points to AIM through Tracelet, then wait.

Arguments: repository directory, number of points. The points are logged at
once, far faster than AIM stores them (~100 µs a point), with a short
``spool_after``: most of them wait in the spool while AIM works. The script
prints ``logged`` when it has logged them all, then, ``settle`` seconds later
(longer than the documented window), one JSON line with the AIM run's hash and
``run.stats()``, and sleeps until the test kills it.
"""

from __future__ import annotations

import faulthandler
import json
import sys
import time

import tracelet

faulthandler.dump_traceback_later(120, exit=True)  # a hung child says where, instead of hanging the test
repo, points, settle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
run = tracelet.start(project="crash", backends=["aim"], config={"aim": {"repo": repo}}, spool_after=0.05)
for step in range(points):
    tracelet.log_metric("train/loss", 1.0 / (step + 1), step)
tracelet.log_params({"lr": 0.1})
print("logged", flush=True)
time.sleep(settle)
backend = run.get_plugin("aim")
stats = run.stats()["aim"]
report = {"hash": getattr(backend, "run_hash", None), "delivered": stats.delivered, "spooled": stats.spooled}
print(json.dumps(report), flush=True)
time.sleep(600)  # the test's SIGKILL ends this
sys.exit("not killed")
