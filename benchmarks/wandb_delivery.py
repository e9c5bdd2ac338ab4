"""Delivery into W&B offline (the real wandb-core service), in fresh interpreters: Tracelet vs raw ``run.log``.

The same points (``--steps`` steps x ``--per-step`` metrics) go to a new
offline W&B run three ways, each in a new interpreter, alternating
``raw, axis, tracelet, naive, raw, ...``:

- raw: one ``run.log({...all metrics of the step...}, step=step)`` per step (full rows: the best
  a hand-written W&B loop does);
- axis: the raw loop's rows with what the backend adds to keep every point (``define_metric`` of
  the ``tracelet/step`` axis, the step and ``_timestamp`` in each row): Tracelet's own share is
  tracelet / axis, the cost of W&B's custom axis is axis / raw;
- naive: one ``run.log({name: value}, step=step)`` per metric (what a naive integration does);
- tracelet: ``tracelet.log_metric`` per metric, the W&B backend delivering.

Each side is timed from its first call until W&B has written everything: for raw and naive
until ``run.finish()`` and ``wandb.teardown()`` return (the service has written its last
record and exited), for Tracelet until ``run.stop()`` returns (the backend finishes its W&B run
and stops the service it started). ``wandb.init`` is outside the timing on every side (Tracelet's
backend start is waited for with ``flush()`` first). The rate is points/s; a trio's ratios are
tracelet's rate over raw's and over naive's; the figures are the medians. The caller's cost is
the logging thread's CPU time (``time.thread_time``) per point, while the loop runs.

Run: ``.tox/wandb/bin/python benchmarks/wandb_delivery.py [--trios 5] [--steps 4000] [--per-step 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _environment(home: Path) -> None:
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home))
    for variable, name in {
        "WANDB_DIR": "dir",
        "WANDB_CACHE_DIR": "cache",
        "WANDB_CONFIG_DIR": "config",
        "WANDB_DATA_DIR": "data",
    }.items():
        (home / name).mkdir()
        os.environ[variable] = str(home / name)


def measure(kind: str, steps: int, per_step: int) -> dict[str, float]:
    """One measurement in this interpreter: points/s and the caller's CPU µs per point."""
    names = [f"train/metric_{index}" for index in range(per_step)]
    count = steps * per_step
    with tempfile.TemporaryDirectory() as directory:
        _environment(Path(directory))
        os.chdir(directory)
        if kind == "tracelet":
            import tracelet

            run = tracelet.start(project="bench", backends=["wandb"], config={"wandb": {"dir": directory}})
            assert run.flush(timeout=120)  # the backend has started its W&B run
            began, cpu = time.perf_counter(), time.thread_time()
            for step in range(steps):
                for index, name in enumerate(names):
                    tracelet.log_metric(name, step * 0.001 + index, step)
            cpu = time.thread_time() - cpu
            assert run.stop(timeout=600)
            seconds = time.perf_counter() - began
            stats = run.stats()["wandb"]
            assert stats.delivered == count, stats
        else:
            import wandb

            wandb_run = wandb.init(project="bench", dir=directory, settings=wandb.Settings(console="off", x_disable_stats=True))
            began, cpu = time.perf_counter(), time.thread_time()
            if kind == "raw":
                for step in range(steps):
                    wandb_run.log({name: step * 0.001 + index for index, name in enumerate(names)}, step=step)
            elif kind == "axis":
                wandb_run.define_metric("tracelet/step", hidden=True)
                wandb_run.define_metric("*", step_metric="tracelet/step", step_sync=True)
                began, cpu = time.perf_counter(), time.thread_time()
                for step in range(steps):
                    row: dict[str, float] = {"tracelet/step": step, "_timestamp": time.time()}
                    row.update((name, step * 0.001 + index) for index, name in enumerate(names))
                    wandb_run.log(row, step=step)
            else:
                for step in range(steps):
                    for index, name in enumerate(names):
                        wandb_run.log({name: step * 0.001 + index}, step=step)
            cpu = time.thread_time() - cpu
            wandb_run.finish()
            wandb.teardown()
            seconds = time.perf_counter() - began
        return {"rate": count / seconds, "cpu_us": cpu / count * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trios", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--per-step", type=int, default=5)
    parser.add_argument("--one", choices=["raw", "axis", "tracelet", "naive"], help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        print(json.dumps(measure(arguments.one, arguments.steps, arguments.per_step)))
        return
    results: dict[str, list[dict[str, float]]] = {"raw": [], "axis": [], "tracelet": [], "naive": []}
    over_raw, over_axis, over_naive = [], [], []
    for _ in range(arguments.trios):
        for kind in results:
            command = [
                sys.executable,
                __file__,
                "--one",
                kind,
                "--steps",
                str(arguments.steps),
                "--per-step",
                str(arguments.per_step),
            ]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[kind].append(json.loads(output.strip().splitlines()[-1]))
        over_raw.append(results["tracelet"][-1]["rate"] / results["raw"][-1]["rate"])
        over_axis.append(results["tracelet"][-1]["rate"] / results["axis"][-1]["rate"])
        over_naive.append(results["tracelet"][-1]["rate"] / results["naive"][-1]["rate"])
    points = arguments.steps * arguments.per_step
    print(f"{points} points ({arguments.steps} steps x {arguments.per_step} metrics), {arguments.trios} trios, medians:")
    for kind, measured in results.items():
        rates = [m["rate"] for m in measured]
        cpu = statistics.median(m["cpu_us"] for m in measured)
        spread = f"range {min(rates):,.0f}-{max(rates):,.0f}"
        print(f"  {kind:9s} {statistics.median(rates):9,.0f} points/s ({spread}), caller {cpu:.2f} µs CPU/point")
    print(f"tracelet / raw full rows: {statistics.median(over_raw):.2f}x  (pairs: {', '.join(f'{r:.2f}' for r in over_raw)})")
    print(f"tracelet / raw rows with the step axis: {statistics.median(over_axis):.2f}x")
    print(f"tracelet / naive per-metric run.log: {statistics.median(over_naive):.2f}x")


if __name__ == "__main__":
    main()
