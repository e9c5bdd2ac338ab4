"""Tracelet against each tracker's own SDK, used the way its docs show: one run, ratios, each case in its own process.

Every case runs in a fresh interpreter, in an empty temp directory, with HOME there too, W&B and
ClearML offline, MLflow on a sqlite store and AIM on a local repository in that directory. Every
tracker SDK is imported before any timing starts, on every side (import costs are not compared).

1. Per-call cost on the training thread: wall time per call (what the loop pays) and the calling
   thread's CPU time (``time.thread_time``), of ``tracelet.log_metric`` with all four backends
   delivering meanwhile, against ``mlflow.log_metric`` (sqlite), W&B ``run.log`` (offline), ClearML
   ``Logger.report_scalar`` (its default subprocess reporter, and in process), AIM ``run.track`` and
   ``SummaryWriter.add_scalar``. Tracelet's backends are started (``flush()``) before the loop.
2. End-to-end delivery per backend, until the points are in its store, against that SDK's best batch
   path: the per-backend scripts ``benchmarks/<backend>_delivery.py`` run alternately (raw, tracelet,
   raw, tracelet), each measurement in its own interpreter with that backend plugin alone loaded (the
   scripts count its records exactly); the ratio is the median of the pairs.
3. Lightning, ``--steps`` steps x 3 ``self.log``, ``log_every_n_steps=1``, CPU (the model of
   benchmarks/lightning_overhead.py): ``logger=False``; Tracelet with all four backends
   (``tracelet.start()`` to ``stop()`` returned, every point delivered); ``CSVLogger``,
   ``MLFlowLogger``, ``WandbLogger``, aim's ``AimLogger``, and one Trainer with the list of these three
   (what users do today to log to several trackers; ClearML has no Lightning logger). Each
   in its own process, after one untimed warm-up fit with ``logger=False``.
4. ``start()``/``stop()`` with all four backends against each SDK's own init and finish, one after
   the other (``mlflow.start_run``/``end_run``, ``wandb.init``/``finish``, ``Task.init``/``close`` with
   the in-process reporter, ``aim.Run``/``close``), one point logged in each.

Run (heavy: 5-10 min on 2 cores; run it once)::

    python3 -m tox -e all --notest
    .tox/all/bin/python benchmarks/peers.py [--readme README.md]

``--readme`` replaces the part of README.md between ``<!-- peers:begin -->`` and ``<!-- peers:end -->``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BACKENDS = ["mlflow", "wandb", "clearml", "aim"]
IN_PROCESS_REPORTER = "sdk.development.report_use_subprocess: false\n"
# ClearML's Task.init patches stdout/stderr, argparse, frameworks and starts a resource monitor by default;
# so configured, a 1000-call report_scalar loop here had written 2 batches after 3 minutes. Off on every
# ClearML side, as benchmarks/clearml_delivery.py and Tracelet's backend have it: the reporter is compared.
CLEARML_AUTOMATION_OFF = {
    "auto_connect_frameworks": False,
    "auto_connect_arg_parser": False,
    "auto_connect_streams": False,
    "auto_resource_monitoring": False,
}


# --- the children --------------------------------------------------------------------------------------


def _import_sdks() -> None:
    import aim  # noqa: F401
    import clearml  # noqa: F401
    import mlflow  # noqa: F401
    import wandb  # noqa: F401


def _loop(call: Callable[[int], None], calls: int) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    for index in range(calls):
        call(index)
    return {"wall_us": (time.perf_counter() - wall) / calls * 1e6, "cpu_us": (time.thread_time() - cpu) / calls * 1e6}


def per_call(sdk: str, calls: int) -> dict[str, float]:
    """Seconds per logging call of ``sdk`` on this thread."""
    _import_sdks()
    if sdk == "tracelet":
        import tracelet

        run = tracelet.start(project="peers", backends=BACKENDS)
        assert run.flush(timeout=300), run.stats()
        result = _loop(lambda i: tracelet.log_metric("loss", 1.0 / (i + 1), step=i), calls)
        assert run.stop(timeout=600), run.stats()
        for backend in BACKENDS:
            assert run.stats()[backend].delivered >= calls, run.stats()[backend]
        return result
    if sdk == "mlflow":
        import mlflow

        mlflow.set_tracking_uri("sqlite:///mlflow.db")
        with mlflow.start_run():
            return _loop(lambda i: mlflow.log_metric("loss", 1.0 / (i + 1), step=i), calls)
    if sdk == "wandb":
        import wandb

        wandb_run = wandb.init(project="peers", mode="offline")
        result = _loop(lambda i: wandb_run.log({"loss": 1.0 / (i + 1)}, step=i), calls)
        wandb_run.finish()
        return result
    if sdk in ("clearml", "clearml-in-process"):
        if sdk == "clearml-in-process":
            Path("clearml.conf").write_text(IN_PROCESS_REPORTER, encoding="utf-8")
            os.environ["CLEARML_CONFIG_FILE"] = str(Path("clearml.conf").absolute())
        from clearml import Task

        task = Task.init(project_name="peers", task_name=sdk, **CLEARML_AUTOMATION_OFF)
        logger = task.get_logger()
        result = _loop(lambda i: logger.report_scalar("train", "loss", value=1.0 / (i + 1), iteration=i), calls)
        if sdk == "clearml":
            # Offline, the default reporter's close() waited over 5 minutes after 1000 points here (it is not
            # what is measured): report and leave without it.
            print(json.dumps(result), flush=True)
            os._exit(0)
        task.close()
        return result
    if sdk == "aim":
        import aim

        aim_run = aim.Run(repo=".")
        result = _loop(lambda i: aim_run.track(1.0 / (i + 1), name="loss", step=i), calls)
        aim_run.close()
        return result
    if sdk == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter("runs")
        result = _loop(lambda i: writer.add_scalar("loss", 1.0 / (i + 1), i), calls)
        writer.close()
        return result
    raise ValueError(sdk)


def lightning(config: str, steps: int) -> dict[str, float]:
    """Seconds of one fit with ``config``'s logging (Tracelet: start() to stop() returned)."""
    import logging

    _import_sdks()
    sys.path.insert(0, str(HERE))
    from lightning_overhead import fit  # the benchmark's tiny model: 3 self.log per step

    import tracelet

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    root = os.getcwd()
    uri = f"sqlite:///{root}/mlflow.db"
    fit(steps, root, False)  # warm-up: the first fit pays one-time costs

    def make_loggers() -> Any:
        import wandb
        from aim.pytorch_lightning import AimLogger
        from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, WandbLogger

        # The trackers' own extras off, as Tracelet's backends have them (its collectors record those).
        quiet = wandb.Settings(console="off", x_disable_stats=True)
        own = {
            "MLFlowLogger": lambda: MLFlowLogger(experiment_name="peers", tracking_uri=uri),
            "WandbLogger": lambda: WandbLogger(project="peers", offline=True, save_dir=root, settings=quiet),
            "AimLogger": lambda: AimLogger(
                repo=root, experiment="peers", system_tracking_interval=None, log_system_params=False,
                capture_terminal_logs=False,
            ),
        }  # fmt: skip
        if config == "CSVLogger":
            return CSVLogger(root)
        if config in own:
            return own[config]()
        if config == "loggers-list":
            return [make() for make in own.values()]
        return False

    began = time.perf_counter()
    if config == "tracelet":
        run = tracelet.start(project="peers", backends=BACKENDS)
        fit(steps, root, False)
        assert run.stop(timeout=600), run.stats()
        delivered = {backend: run.stats()[backend].delivered for backend in BACKENDS}
        assert min(delivered.values()) >= 3 * steps, delivered
    else:
        fit(steps, root, make_loggers())
        if config in ("WandbLogger", "loggers-list"):
            import wandb

            wandb.finish()  # WandbLogger leaves the run open: finishing it is part of its work
    return {"seconds": time.perf_counter() - began}


def start_stop(side: str) -> dict[str, float]:
    """Tracelet's start(), backends ready, stop() with four backends; or each SDK's init and finish in turn."""
    _import_sdks()
    if side == "tracelet":
        import tracelet

        began = time.perf_counter()
        run = tracelet.start(project="peers", name="start-stop", backends=BACKENDS)
        started = time.perf_counter()
        run.log_metric("loss", 1.0, step=0)
        assert run.flush(timeout=300), run.stats()
        ready = time.perf_counter()
        assert run.stop(timeout=300), run.stats()
        stopped = time.perf_counter()
        return {"start": started - began, "ready": ready - began, "stop": stopped - ready}
    import aim
    import mlflow
    import wandb
    from clearml import Task

    times: dict[str, float] = {}

    def timed(name: str, action: Callable[[], Any]) -> Any:
        began = time.perf_counter()
        result = action()
        times[name] = time.perf_counter() - began
        return result

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    timed("mlflow init", lambda: mlflow.start_run(run_name="start-stop"))
    mlflow.log_metric("loss", 1.0, step=0)
    timed("mlflow finish", mlflow.end_run)
    wandb_run = timed("wandb init", lambda: wandb.init(project="peers", mode="offline"))
    wandb_run.log({"loss": 1.0}, step=0)
    timed("wandb finish", wandb_run.finish)
    # ClearML's in-process reporter, as Tracelet's backend uses it: offline, the default reporter's close()
    # took from 2 s to over 5 minutes here, which would say nothing about starting and stopping.
    Path("clearml.conf").write_text(IN_PROCESS_REPORTER, encoding="utf-8")
    os.environ["CLEARML_CONFIG_FILE"] = str(Path("clearml.conf").absolute())
    task = timed("clearml init", lambda: Task.init(project_name="peers", task_name="start-stop", **CLEARML_AUTOMATION_OFF))
    task.get_logger().report_scalar("train", "loss", value=1.0, iteration=0)
    timed("clearml finish", task.close)
    aim_run = timed("aim init", lambda: aim.Run(repo="."))
    aim_run.track(1.0, name="loss", step=0)
    timed("aim finish", aim_run.close)
    return times


# --- the parent ------------------------------------------------------------------------------------------


def _environment(directory: Path) -> dict[str, str]:
    keep = {key: value for key, value in os.environ.items() if not key.startswith(("TRACELET_", "MLFLOW_", "WANDB_", "CLEARML_"))}
    keep.update(
        HOME=str(directory),
        MLFLOW_DISABLE_TELEMETRY="true",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(directory),
        CLEARML_OFFLINE_MODE="1",
        PYTHONUNBUFFERED="1",
    )
    return keep


def child(*arguments: str, script: Path = Path(__file__), only: str | None = None, timeout: float = 600) -> Any:
    """Run ``script`` with ``arguments`` in a fresh interpreter in a new temp dir; its last stdout line, as JSON.

    ``only``: load that plugin alone (``TRACELET_PLUGINS``), as the per-backend scripts expect.
    """
    with tempfile.TemporaryDirectory(prefix="peers-") as directory:
        environment = _environment(Path(directory))
        if only is not None:
            environment["TRACELET_PLUGINS"] = only
        done = subprocess.run(
            [sys.executable, str(script), *arguments],
            cwd=directory,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(arguments)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def attempt(measure: Callable[[], Any]) -> Any:
    """``measure()``, or ``None`` (said on stderr) when its process failed or ran out of time: the rest still runs."""
    try:
        return measure()
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"a case did not finish: {str(error)[:3000]}", file=sys.stderr, flush=True)
        return None


def delivery(backend: str, pairs: int, points: int) -> dict[str, float]:
    """Median ratio of Tracelet's delivery rate over the SDK's best batch path, from the backend's own script."""
    script = HERE / f"{backend}_delivery.py"
    raw_rates, tracelet_rates = [], []
    for _ in range(pairs):
        for kind, rates in (("raw", raw_rates), ("tracelet", tracelet_rates)):
            if backend == "mlflow":
                result = child("--one", kind, "--metrics", str(points), script=script, only=backend)
            elif backend == "wandb":
                result = child("--one", kind, "--steps", str(points // 5), "--per-step", "5", script=script, only=backend)
            elif backend == "clearml":
                result = child("--side", kind, "--points", str(points), script=script, only=backend)
            else:
                result = child("--one", kind, "--metrics", str(points), "--repo", ".", script=script, only=backend)
            rates.append(float(result["rate"] if isinstance(result, dict) else result))
    ratios = [t / r for t, r in zip(tracelet_rates, raw_rates, strict=True)]
    return {
        "raw": statistics.median(raw_rates),
        "tracelet": statistics.median(tracelet_rates),
        "ratio": statistics.median(ratios),
    }


_BEST_PATH = {
    "mlflow": "`MlflowClient.log_batch`, 1000 per call",
    "wandb": "`run.log` of full rows (5 metrics per step)",
    "clearml": "`report_scalar`, in-process reporter",
    "aim": "`run.track` per point",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=3000, help="Lightning steps (default 3000)")
    parser.add_argument("--pairs", type=int, default=2, help="delivery: raw/tracelet pairs per backend (default 2)")
    parser.add_argument("--points", type=int, default=20_000, help="delivery: points per measurement (default 20,000)")
    parser.add_argument("--readme", type=Path, help="write the tables into this README between the peers markers")
    arguments = parser.parse_args()
    if arguments.case:
        kind, _, name = arguments.case.partition(":")
        if kind == "call":
            result = per_call(name, arguments.calls)
        elif kind == "lightning":
            result = lightning(name, arguments.steps)
        else:
            result = start_stop(name)
        print(json.dumps(result))
        return

    began = time.perf_counter()
    lines: list[str] = []
    calls = {
        "tracelet": 20_000,
        "mlflow": 300,
        "wandb": 3000,
        "clearml": 1000,
        "clearml-in-process": 10_000,
        "aim": 5000,
        "tensorboard": 20_000,
    }
    labels = {
        "tracelet": "`tracelet.log_metric`, four backends delivering",
        "mlflow": "`mlflow.log_metric` (sqlite)",
        "wandb": "W&B `run.log` (offline)",
        "clearml": "ClearML `report_scalar` (default: subprocess reporter)",
        "clearml-in-process": "ClearML `report_scalar` (in-process reporter)",
        "aim": "AIM `run.track`",
        "tensorboard": "`SummaryWriter.add_scalar`",
    }
    measured = {
        sdk: attempt(lambda sdk=sdk, count=count: child("--case", f"call:{sdk}", "--calls", str(count)))
        for sdk, count in calls.items()
    }
    base = measured["tracelet"]["wall_us"]
    lines += [
        "Per call on the training thread (wall time: what the loop pays; CPU: the calling thread's):",
        "",
        "| call | calls | wall µs/call | CPU µs/call | wall vs Tracelet |",
        "|---|---:|---:|---:|---:|",
    ]
    for sdk, figures in measured.items():
        if figures is None:
            lines.append(f"| {labels[sdk]} | {calls[sdk]:,} | did not finish in 10 min | | |")
            continue
        ratio = "1.0x" if sdk == "tracelet" else f"{figures['wall_us'] / base:,.1f}x"
        lines.append(f"| {labels[sdk]} | {calls[sdk]:,} | {figures['wall_us']:,.2f} | {figures['cpu_us']:,.2f} | {ratio} |")
    cheapest = min((figures["wall_us"], sdk) for sdk, figures in measured.items() if sdk != "tracelet" and figures)
    lines += ["", f"Cheapest SDK call: {labels[cheapest[1]]}, {cheapest[0] / base:,.1f}x Tracelet's (goal: >= 100x).", ""]
    print("\n".join(lines), flush=True)

    lines += [
        f"End-to-end delivery until in the store, {arguments.points:,} points, median of {arguments.pairs} "
        "raw/tracelet pairs (benchmarks/<backend>_delivery.py, fresh interpreters):",
        "",
        "| backend | SDK's best path | SDK points/s | Tracelet points/s | Tracelet / SDK (goal >= 0.9x) |",
        "|---|---|---:|---:|---:|",
    ]
    for backend in BACKENDS:
        figures = attempt(lambda backend=backend: delivery(backend, arguments.pairs, arguments.points))
        if figures is None:
            lines.append(f"| {backend} | {_BEST_PATH[backend]} | did not finish | | |")
            continue
        rates = f"{figures['raw']:,.0f} | {figures['tracelet']:,.0f}"
        lines.append(f"| {backend} | {_BEST_PATH[backend]} | {rates} | {figures['ratio']:.2f}x |")
        print(lines[-1], flush=True)
    lines.append("")

    configs = ["logger=False", "tracelet", "CSVLogger", "MLFlowLogger", "WandbLogger", "AimLogger", "loggers-list"]
    config_labels = {
        "logger=False": "`logger=False` (baseline)",
        "tracelet": "Tracelet, four backends (start to stop, all delivered)",
        "CSVLogger": "`CSVLogger`",
        "MLFlowLogger": "`MLFlowLogger` (sqlite)",
        "WandbLogger": "`WandbLogger` (offline)",
        "AimLogger": "aim's `AimLogger` (local repository)",
        "loggers-list": "`[MLFlowLogger, WandbLogger, AimLogger]`",
    }
    fits = {
        config: attempt(lambda config=config: child("--case", f"lightning:{config}", "--steps", str(arguments.steps)))
        for config in configs
    }
    lines += [
        f"Lightning, {arguments.steps:,} steps x 3 `self.log`, `log_every_n_steps=1`, CPU, one process per row:",
        "",
        "| configuration | seconds | vs `logger=False` |",
        "|---|---:|---:|",
    ]
    base_fit = fits["logger=False"]["seconds"]
    for config, fitted in fits.items():
        if fitted is None:
            lines.append(f"| {config_labels[config]} | did not finish | |")
        else:
            lines.append(f"| {config_labels[config]} | {fitted['seconds']:.2f} | {fitted['seconds'] / base_fit:.2f}x |")
    lines += ["", "(goal: Tracelet with four backends <= 1.05x `logger=False`)", ""]
    print("\n".join(lines[-len(configs) - 6 :]), flush=True)

    ours = attempt(lambda: child("--case", "startstop:tracelet")) or {"start": math.nan, "ready": math.nan, "stop": math.nan}
    theirs = attempt(lambda: child("--case", "startstop:sdks")) or {"sdks init": math.nan, "sdks finish": math.nan}
    init = sum(value for key, value in theirs.items() if key.endswith("init"))
    finish = sum(value for key, value in theirs.items() if key.endswith("finish"))
    inits = ", ".join(f"{key.split()[0]} {value:.2f}" for key, value in theirs.items() if key.endswith("init"))
    finishes = ", ".join(f"{key.split()[0]} {value:.2f}" for key, value in theirs.items() if key.endswith("finish"))
    lines += [
        "Start and stop, four trackers (SDKs imported beforehand on both sides):",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| `tracelet.start()` returns | {ours['start']:.3f} |",
        f"| ... all four backends started (first point delivered) | {ours['ready']:.2f} |",
        f"| `run.stop()` (every backend ended) | {ours['stop']:.2f} |",
        f"| SDK inits in turn ({inits}) | {init:.2f} |",
        f"| SDK finishes in turn ({finishes}) | {finish:.2f} |",
        "",
    ]
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("tracelet-core", "mlflow", "wandb", "clearml", "aim", "torch", "lightning")
    )
    header = [
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} CPUs shared with other work, "
        f"Python {platform.python_version()}, {versions}; `.tox/all/bin/python benchmarks/peers.py` "
        f"({(time.perf_counter() - began) / 60:.0f} min).",
        "",
    ]
    table = "\n".join(header + lines)
    print("\n" + table)
    if arguments.readme is not None:
        text = arguments.readme.read_text(encoding="utf-8")
        begin, end = "<!-- peers:begin -->", "<!-- peers:end -->"
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        arguments.readme.write_text(f"{head}{begin}\n{table}\n{end}{tail}", encoding="utf-8")


if __name__ == "__main__":
    main()
