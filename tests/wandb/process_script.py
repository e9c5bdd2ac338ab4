"""Run by test_process as a real process: Tracelet with W&B (offline unless told), in one of three modes.

``python process_script.py MODE WANDB_DIR POINTS``, in a working directory of the test's:

- ``clean``: log, stop, and print a JSON report: the W&B service processes
  (``wandb-core``) alive before and after ``stop()``, whether ``sys.exit`` is still the
  script's and whose method ``sys.excepthook`` is (W&B's ``ExitHooks`` replaces both);
- ``sigterm``: log half the points and flush, log the other half, print ``ready <pids of
  wandb-core>`` and wait for the test's SIGTERM;
- ``exit``: log half the points and flush (W&B has started), log the other half, print
  ``run <W&B run id>`` and exit without ``stop()``;
- ``hung``: log half the points and flush, print ``ready <pids of wandb-core>``, wait for a line
  on stdin (the test stops the service with SIGSTOP meanwhile), log the other half,
  ``stop(timeout=3)``, print a JSON report, wait for another line (the test resumes the service);
- ``crash``: log, print ``run <W&B run id>`` and die of an uncaught exception;
- ``unreachable``: W&B online, pointed at a closed port on 127.0.0.1 (``WANDB_BASE_URL``
  set by the test): log, ``stop(timeout=3)``, print a JSON report (its result, how long
  it took, what was spooled).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import tracelet

mode, wandb_dir, points = sys.argv[1], sys.argv[2], int(sys.argv[3])


def service_pids() -> list[int]:
    """Pids of this process's child processes named wandb-core (the W&B service)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == os.getpid() and "wandb" in name:
            found.append(int(entry.name))
    return found


exit_function = sys.exit
settings: dict[str, object] = {"dir": wandb_dir}
if mode == "unreachable":
    settings.update(mode="online", init_timeout=4)
run = tracelet.start(project="process", backends=["wandb"], config={"wandb": settings})
half = points // 2
for step in range(half):
    tracelet.log_metric("loss", 1.0 / (step + 1), step)
tracelet.log_params({"phase": "first"})

if mode == "clean":
    assert run.flush(timeout=60)
    during = service_pids()
    ok = run.stop(timeout=60)
    deadline = time.monotonic() + 10
    while service_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    report = {
        "ok": ok,
        "during": during,
        "after": service_pids(),
        "exit_kept": sys.exit is exit_function,
        "excepthook_owner": type(getattr(sys.excepthook, "__self__", None)).__name__,
        "run_id": run.stats()["wandb"].run_id,
    }
    print(json.dumps(report), flush=True)
elif mode == "sigterm":
    assert run.flush(timeout=60)
    for step in range(half, points):
        tracelet.log_metric("loss", 1.0 / (step + 1), step)
    tracelet.log_params({"phase": "second"})
    print("ready", " ".join(str(pid) for pid in service_pids()), flush=True)
    time.sleep(120)  # the test's SIGTERM ends this
    sys.exit("not killed")
elif mode == "exit":
    assert run.flush(timeout=60)  # W&B started: see docs/plugins/wandb.md for a script that ends before
    for step in range(half, points):
        tracelet.log_metric("loss", 1.0 / (step + 1), step)
    print("run", run.stats()["wandb"].run_id, flush=True)  # and exit without stop(): core's exit handler stops the run
elif mode == "hung":
    assert run.flush(timeout=60)
    print("ready", " ".join(str(pid) for pid in service_pids()), flush=True)
    sys.stdin.readline()  # the test has stopped the W&B service (SIGSTOP): W&B hangs
    for step in range(half, points):
        tracelet.log_metric("loss", 1.0 / (step + 1), step)
    started = time.monotonic()
    ok = run.stop(timeout=3)
    elapsed = time.monotonic() - started
    stats = run.stats()["wandb"]
    report = {"ok": ok, "elapsed": elapsed, "spooled": stats.spooled, "delivered": stats.delivered, "run_id": stats.run_id}
    print(json.dumps(report), flush=True)
    sys.stdin.readline()  # the test has let the service go on (SIGCONT)
elif mode == "crash":
    assert run.flush(timeout=60)  # the backend has started W&B (and its service's hooks were undone)
    print("run", run.stats()["wandb"].run_id, flush=True)
    raise RuntimeError("training diverged")
elif mode == "unreachable":
    for step in range(half, points):
        tracelet.log_metric("loss", 1.0 / (step + 1), step)
    started = time.monotonic()
    ok = run.stop(timeout=3)
    elapsed = time.monotonic() - started
    stats = run.stats()["wandb"]
    print(json.dumps({"ok": ok, "elapsed": elapsed, "spooled": stats.spooled, "run_id": stats.run_id}), flush=True)
    print("exiting", time.monotonic(), flush=True)
else:
    sys.exit(f"unknown mode {mode!r}")
