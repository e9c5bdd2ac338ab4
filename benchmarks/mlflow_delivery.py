"""Delivery to a healthy but slower-than-the-loop MLflow backend, in fresh interpreters, against raw ``log_batch``.

Each measurement runs in a new interpreter on a new sqlite store (so neither
side inherits a warm SQLAlchemy engine or page cache from the other), and the
two kinds alternate: ``raw, tracelet, raw, tracelet, ...``. A pair's ratio is
tracelet's metrics/s over the raw path's; the figure is the median of the pairs.

- raw: ``MlflowClient.log_batch`` of 1,000 metrics per call, synchronously;
- tracelet: ``tracelet.log_metric`` flat out for every point, then ``flush()``;
  timed from the first call until ``flush()`` returned (everything stored). The
  loop outruns MLflow (~10k points/s on sqlite), so the backlog waits longer than
  ``spool_after`` and is written to the spool on its way.

Run: ``.tox/mlflow/bin/python benchmarks/mlflow_delivery.py [--pairs 7] [--metrics 50000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

HERE = Path(__file__).resolve().parent


def measure(kind: str, count: int) -> float:
    """One measurement in this interpreter: metrics/s."""
    sys.path.insert(0, str(HERE))
    from mlflow_throughput import fresh_sqlite, points, raw_log_batch

    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        uri = fresh_sqlite(Path(directory), "store")
        data = points(count)
        if kind == "raw":
            return raw_log_batch(uri, data)
        # the default queue_size: what users get (the backlog goes through the spool's durable copy)
        import tracelet

        run = tracelet.start(project="bench", backends=["mlflow"], config={"mlflow": {"tracking_uri": uri}})
        assert run.flush(timeout=120)
        import time

        began = time.perf_counter()
        for name, value, step, timestamp in data:
            tracelet.log_metric(name, value, step, timestamp)
        assert run.flush(timeout=600)
        seconds = time.perf_counter() - began
        stats = run.stats()["mlflow"]
        assert run.stop(timeout=60)
        assert stats.delivered == count, stats
        return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--metrics", type=int, default=50_000)
    parser.add_argument("--one", choices=["raw", "tracelet"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(measure(arguments.one, arguments.metrics)))
        return
    ratios = []
    for pair in range(arguments.pairs):
        rates = {}
        for kind in ("raw", "tracelet"):
            output = subprocess.run(
                [sys.executable, __file__, "--one", kind, "--metrics", str(arguments.metrics)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            rates[kind] = float(output.strip().splitlines()[-1])
        ratios.append(rates["tracelet"] / rates["raw"])
        print(f"pair {pair + 1}: raw {rates['raw']:,.0f}/s, tracelet {rates['tracelet']:,.0f}/s, ratio {ratios[-1]:.3f}x")
    print(f"median of {len(ratios)} pairs: {statistics.median(ratios):.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
