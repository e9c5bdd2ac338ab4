"""What optimizer capture and ``tracelet.watch`` cost a training loop, as ratios measured in one process.

- optimizer capture, the hook alone: ``optimizer.step()`` of AdamW on a
  5-parameter model, with and without a run, where the hook's cost is a
  visible share of the step; the difference in us.
- optimizer capture: a small MLP (64-256-256-10, batch 64, AdamW and
  ``OneCycleLR``, so the LR and beta1 change, and are logged, at every step),
  the whole training step and ``optimizer.step()`` alone; with a run started
  (recording backend, ``optimizers`` on, the default) vs no run. Goal ≤ 1.02x.
- ``watch(model, log="all", every=100)``: a small CNN (two conv layers and a
  linear one, batch 32 of 1x28x28, SGD with momentum); with a run started and
  the model watched (optimizer capture off, to see watch's own cost) vs no
  run. Goal ≤ 1.05x.
- with ``--wandb`` (an env that has wandb): ``wandb.watch(model, log="all",
  log_freq=100)`` on the same CNN loop in an offline W&B run, vs no run.

Times are the training thread's CPU time (``time.thread_time()``): what the
loop pays, without the noise of other processes on a shared machine (and
without Tracelet's router thread, which delivers on the other core). Each
repetition times the baseline and the captured loop back to back
(alternating which goes first); the figure is the median of the
repetitions' ratios. One torch thread, so that both loops use the same
compute.

    python benchmarks/pytorch_capture.py [--repeats 7] [--steps 1000] [--wandb]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

import tracelet

torch.set_num_threads(1)


def mlp_loop(steps: int) -> tuple[float, float]:
    """CPU seconds per training step and per ``optimizer.step()`` of the MLP loop."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps + 1)
    inputs, targets = torch.randn(64, 64), torch.randint(0, 10, (64,))
    loss_function = torch.nn.CrossEntropyLoss()
    in_step = 0.0
    began = time.thread_time()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_function(model(inputs), targets).backward()
        before = time.thread_time()
        optimizer.step()
        in_step += time.thread_time() - before
        scheduler.step()
    return (time.thread_time() - began) / steps, in_step / steps


def tiny_steps(steps: int, changing: bool) -> float:
    """CPU seconds per ``optimizer.step()`` of AdamW on a 5-parameter model: the hook's cost stands out."""
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    if changing:  # lr and beta1 change at every step: two metric records a step
        scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps + 1)
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10**9)
    model(torch.ones(1, 4)).sum().backward()
    spent = 0.0
    for _ in range(steps):
        began = time.thread_time()
        optimizer.step()
        spent += time.thread_time() - began
        scheduler.step()
    return spent / steps


def hook_cost(repeats: int, steps: int) -> None:
    tiny_steps(1000, changing=False)
    for changing in (False, True):
        captured, plain = [], []
        for repeat in range(repeats):
            for with_capture in (repeat % 2 == 0, repeat % 2 == 1):
                if with_capture:
                    run = started(optimizers=True)
                    captured.append(tiny_steps(steps, changing))
                    run.stop()
                else:
                    plain.append(tiny_steps(steps, changing))
        extra = statistics.median(a - b for a, b in zip(captured, plain, strict=True))
        what = "lr and beta1 change at every step (2 metrics)" if changing else "nothing changes"
        print(
            f"optimizer capture per optimizer.step(), {what}: +{extra * 1e6:.2f} us "
            f"(AdamW step of a 5-parameter model: {statistics.median(plain) * 1e6:.1f} us; median of {repeats} pairs)"
        )


def cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 5 * 5, 10),
    )


def cnn_loop(steps: int, watch: Callable[[torch.nn.Module], object] | None = None) -> float:
    """CPU seconds per training step of the CNN loop; ``watch(model)`` is called before the first step."""
    model = cnn()
    if watch is not None:
        watch(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs, targets = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    loss_function = torch.nn.CrossEntropyLoss()
    began = time.thread_time()
    for _ in range(steps):
        optimizer.zero_grad()
        loss_function(model(inputs), targets).backward()
        optimizer.step()
    return (time.thread_time() - began) / steps


def started(**config: object) -> tracelet.Run:
    return tracelet.start(project="bench", backends=["recording"], config={"pytorch": config}, handle_signals=False)


def optimizer_ratios(repeats: int, steps: int) -> None:
    mlp_loop(200)  # warm-up: torch's first calls allocate and pick kernels
    loops, steps_only, plain_loops, plain_steps = [], [], [], []
    for repeat in range(repeats):
        for captured in (repeat % 2 == 0, repeat % 2 == 1):
            if captured:
                run = started(optimizers=True)
                loop, step = mlp_loop(steps)
                run.stop()
                metrics = run.get_plugin("recording").metrics  # type: ignore[attr-defined]
                assert len({m.step for m in metrics if m.name == "optimizer/AdamW/group0/lr"}) == steps
                loops.append(loop)
                steps_only.append(step)
            else:
                loop, step = mlp_loop(steps)
                plain_loops.append(loop)
                plain_steps.append(step)
    loop_ratio = statistics.median(a / b for a, b in zip(loops, plain_loops, strict=True))
    step_ratio = statistics.median(a / b for a, b in zip(steps_only, plain_steps, strict=True))
    print(
        f"optimizer capture, MLP + AdamW + OneCycleLR: training step {statistics.median(plain_loops) * 1e6:.0f} -> "
        f"{statistics.median(loops) * 1e6:.0f} us, ratio {loop_ratio:.3f}x; optimizer.step() "
        f"{statistics.median(plain_steps) * 1e6:.1f} -> {statistics.median(steps_only) * 1e6:.1f} us, ratio "
        f"{step_ratio:.3f}x (median of {repeats} interleaved pairs x {steps} steps; goal <= 1.02x)"
    )


def watch_ratios(repeats: int, steps: int) -> None:
    cnn_loop(100)
    watched, plain = [], []
    for repeat in range(repeats):
        for captured in (repeat % 2 == 0, repeat % 2 == 1):
            if captured:
                run = started(optimizers=False)
                watched.append(cnn_loop(steps, lambda model: tracelet.watch(model, log="all", every=100)))
                run.stop()
                histograms = run.get_plugin("recording").of_type(tracelet.Histogram)  # type: ignore[attr-defined]
                assert len(histograms) == 12 * len(range(0, steps, 100)), len(histograms)
            else:
                plain.append(cnn_loop(steps))
    ratio = statistics.median(a / b for a, b in zip(watched, plain, strict=True))
    print(
        f"watch(model, log='all', every=100), small CNN: training step {statistics.median(plain) * 1e6:.0f} -> "
        f"{statistics.median(watched) * 1e6:.0f} us, ratio {ratio:.3f}x "
        f"(median of {repeats} interleaved pairs x {steps} steps; goal <= 1.05x)"
    )
    # every=1: each step is a logging step, which shows what one costs (12 histograms, one copy).
    every_step, plain = [], []
    for repeat in range(repeats):
        for captured in (repeat % 2 == 0, repeat % 2 == 1):
            if captured:
                run = started(optimizers=False)
                every_step.append(cnn_loop(steps // 10, lambda model: tracelet.watch(model, log="all", every=1)))
                run.stop()
            else:
                plain.append(cnn_loop(steps // 10))
    extra = statistics.median(a - b for a, b in zip(every_step, plain, strict=True))
    print(
        f"  one logging step (every=1, 12 histograms): +{extra * 1e6:.0f} us on the training thread, "
        f"so +{extra / 100 * 1e6:.1f} us a step at every=100"
    )


def wandb_ratio(repeats: int, steps: int) -> None:
    import wandb

    cnn_loop(100)
    watched, plain = [], []
    with tempfile.TemporaryDirectory() as directory:
        os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=directory)
        for repeat in range(repeats):
            for captured in (repeat % 2 == 0, repeat % 2 == 1):
                if captured:
                    run = wandb.init(project="bench", dir=directory)
                    watched.append(cnn_loop(steps, functools.partial(run.watch, log="all", log_freq=100)))
                    run.finish()
                else:
                    plain.append(cnn_loop(steps))
    ratio = statistics.median(a / b for a, b in zip(watched, plain, strict=True))
    print(
        f"wandb.watch(model, log='all', log_freq=100), same CNN, offline: training step "
        f"{statistics.median(plain) * 1e6:.0f} -> {statistics.median(watched) * 1e6:.0f} us, ratio {ratio:.3f}x "
        f"(median of {repeats} interleaved pairs x {steps} steps)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--wandb", action="store_true", help="also measure wandb.watch (needs wandb)")
    args = parser.parse_args()
    hook_cost(args.repeats, args.steps * 10)
    optimizer_ratios(args.repeats, args.steps)
    watch_ratios(args.repeats, args.steps)
    if args.wandb:
        wandb_ratio(args.repeats, args.steps)


if __name__ == "__main__":
    main()
