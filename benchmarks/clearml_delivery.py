"""ClearML offline, in fresh interpreters: Tracelet vs raw ``Logger.report_scalar``.

The same points (``--points`` scalars, ``train/loss`` at steps 0..n-1) go to a new offline
ClearML task three ways, each in a new interpreter, alternating ``default, raw, tracelet, ...``:

- default: ClearML's own defaults (its reporter in a subprocess on Linux), ``report_scalar`` per
  point, then ``task.close()``;
- raw: the same with the in-process reporter (``sdk.development.report_use_subprocess: false``,
  what the backend sets up), ``report_scalar`` per point, then ``flush(wait_for_uploads=True)`` and
  ``close()``;
- tracelet: ``run.log_metric`` per point, the ClearML backend delivering, until ``run.stop()`` returns.

``Task.init`` is outside the timing on every side (Tracelet's backend start is waited for with
``flush()`` first). Printed per side (medians over ``--rounds``): the caller's cost per call (the
logging thread's CPU time, ``time.thread_time``, while the loop runs), the delivery rate in points/s
(from the first call until everything is written and the task closed), and the time from the end
of the loop until the task is closed (``close()``, or ``stop()`` for Tracelet). The ratios: Tracelet's
delivery rate over raw's, and Tracelet's ``stop()`` over ClearML's default ``close()``.

Run: ``.tox/clearml/bin/python benchmarks/clearml_delivery.py [--rounds 3] [--points 20000]``. The default side's
``close()`` takes minutes at 20,000 points offline (its subprocess reporter): ~5 min per round here.
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
from typing import Any

_AUTOMATION_OFF: dict[str, Any] = {
    "auto_connect_frameworks": False,
    "auto_connect_arg_parser": False,
    "auto_connect_streams": False,
    "auto_resource_monitoring": False,
    "reuse_last_task_id": False,
}


def _side(side: str, points: int) -> dict[str, float]:
    """One measurement, in this (fresh) interpreter."""
    if side == "tracelet":
        import tracelet

        run = tracelet.start(project="bench", backends=["clearml"], config={"clearml": {"offline": True}})
        assert run.flush(120)
        began, cpu = time.perf_counter(), time.thread_time()
        for step in range(points):
            run.log_metric("train/loss", step * 0.5, step=step)
        cpu = time.thread_time() - cpu
        looped = time.perf_counter()
        assert run.stop(timeout=300)
    else:
        if side == "raw":
            config = Path(tempfile.mkdtemp()) / "clearml.conf"
            config.write_text("sdk.development.report_use_subprocess: false\n")
            os.environ["CLEARML_CONFIG_FILE"] = str(config)
        from clearml import Task

        task = Task.init(project_name="bench", task_name=side, **_AUTOMATION_OFF)
        logger = task.get_logger()
        began, cpu = time.perf_counter(), time.thread_time()
        for step in range(points):
            logger.report_scalar("train", "loss", step * 0.5, iteration=step)
        cpu = time.thread_time() - cpu
        looped = time.perf_counter()
        if side == "raw":
            task.flush(wait_for_uploads=True)
        task.close()
    ended = time.perf_counter()
    return {"caller_us": cpu / points * 1e6, "rate": points / (ended - began), "close_s": ended - looped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--side", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.side:
        print(json.dumps(_side(arguments.side, arguments.points)))
        return
    results: dict[str, list[dict[str, float]]] = {"default": [], "raw": [], "tracelet": []}
    for _ in range(arguments.rounds):
        for side in results:
            with tempfile.TemporaryDirectory() as home:
                env = {key: value for key, value in os.environ.items() if not key.startswith(("CLEARML_", "TRACELET_"))}
                env.update(HOME=home, CLEARML_OFFLINE_MODE="1", TRACELET_PLUGINS="clearml")
                command = [sys.executable, __file__, "--side", side, "--points", str(arguments.points)]
                done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, check=True)
                results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    medians = {side: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for side, runs in results.items()}
    for side, figures in medians.items():
        print(
            f"{side:>9}: caller {figures['caller_us']:8.1f} us/call  delivery {figures['rate']:10.0f} points/s  "
            f"close {figures['close_s']:6.2f} s"
        )
    delivery = medians["tracelet"]["rate"] / medians["raw"]["rate"]
    closing = medians["tracelet"]["close_s"] / medians["default"]["close_s"]
    print(f"delivery, tracelet / raw report_scalar (in-process reporter): {delivery:.2f}x")
    print(f"stop() with tracelet / ClearML's default close(): {closing:.3f}x")


if __name__ == "__main__":
    main()
