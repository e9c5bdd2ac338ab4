"""Run by test_secrets as a process: plant credentials in MLflow URIs and records, print what the test checks.

Arguments: the URI of a working server with credentials in it, the URI of a
closed port with the same credentials. The first run delivers (then stops
with a deadline too short for 20,000 metrics, so the rest is spooled next to
its meta.json); the second cannot start, so MLflow's error, which quotes the
URI, reaches Tracelet's warning on stderr and ``stats().last_error``.
"""

from __future__ import annotations

import json
import sys

import tracelet

working, closed, secret = sys.argv[1], sys.argv[2], sys.argv[3]
run = tracelet.start(project="secrets", backends=["mlflow"], config={"mlflow": {"tracking_uri": working}})
run.log_params({"optimiser": [{"name": "db", "password": secret}], "url": working})
run.log_text("request", f"curl -H 'Authorization: Bearer {secret}' {working}")
assert run.flush(timeout=60)
for step in range(20_000):
    run.log_metric("loss", 1.0, step=step)
run.stop(timeout=0.01)  # the deadline spools what is undelivered

failing = tracelet.start(project="secrets", backends=["mlflow"], config={"mlflow": {"tracking_uri": closed}, "retry_attempts": 1})
failing.log_params({"lr": 0.1})
failing.stop(timeout=5)
backend = run.get_plugin("mlflow")
print(json.dumps({"run_id": backend.run_id, "run": run.id, "last_error": failing.stats()["mlflow"].last_error}))
