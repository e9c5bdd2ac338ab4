"""SummaryWriter.add_scalar per call, patched by Tracelet vs unpatched, in one process.

Goal: patched <= 1.10x unpatched. Runs alternate (unpatched, patched, ...)
so both see the same machine state; each figure is the median of the runs.
Tracelet delivers to the in-memory recording backend, so the figure is the
cost on the training thread, not a backend's.

    python benchmarks/pytorch_overhead.py [--calls 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet


def per_call(logdir: str, calls: int, value: object) -> float:
    """Seconds per add_scalar call on a fresh writer ."""
    writer = SummaryWriter(logdir)  # default queue and flush settings, as users run it
    add_scalar = writer.add_scalar
    start = time.perf_counter()
    for step in range(calls):
        add_scalar("loss", value, step)
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        for label, value in (("python float", 0.5), ("0-d tensor", torch.tensor(0.5))):
            plain: list[float] = []
            patched: list[float] = []
            per_call(f"{root}/warmup", 2000, value)
            for repeat in range(args.repeats):
                plain.append(per_call(f"{root}/plain-{label}-{repeat}", args.calls, value))
                run = tracelet.start(backends=["recording"], config={"pytorch": {"upload_logdir": False}})
                patched.append(per_call(f"{root}/patched-{label}-{repeat}", args.calls, value))
                run.stop()
                captured = len(run.get_plugin("recording").metrics)  # type: ignore[attr-defined]
                assert captured == args.calls, captured
            base, with_tracelet = statistics.median(plain), statistics.median(patched)
            print(
                f"add_scalar({label}): unpatched {base * 1e6:.1f} us/call, with Tracelet {with_tracelet * 1e6:.1f} us/call,"
                f" ratio {with_tracelet / base:.3f}x (median of {args.repeats} x {args.calls} calls)"
            )


if __name__ == "__main__":
    main()
