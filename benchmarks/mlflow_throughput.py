"""Throughput of the MLflow backend, against baselines measured side by side in the same process.

1. End-to-end delivery into a sqlite store: metrics per second from the first
   ``tracelet.log_metric`` call until ``tracelet.flush()`` returns (the backend
   calls MLflow synchronously, so everything is then visible to a new
   ``MlflowClient``; the script checks that every point is), against
   - raw ``MlflowClient.log_batch`` of 1000 metrics per call (goal: >= 0.9x),
   - naive per-call fluent ``mlflow.log_metric`` (goal: >= 100x), measured on
     a smaller N because it is ~500 times slower.
2. The same against a local ``mlflow server`` (127.0.0.1, ``--workers 1``,
   sqlite backend store), started and stopped here.
3. Caller-side cost of ``tracelet.log_metric`` while the MLflow backend
   delivers on its worker: CPU time of the calling thread
   (``time.thread_time()``) and wall time, per call, against
   ``queue.SimpleQueue().put((name, value, step, time.time()))``.

Run: ``.tox/mlflow/bin/python benchmarks/mlflow_throughput.py`` (``--help`` for sizes).
Every store, server and file lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric as MlflowMetric

import tracelet

Point = tuple[str, float, int, float]
NAMES = [f"bench/metric_{index}" for index in range(10)]
BASE_TIME = time.time()
BASELINE = "`queue.SimpleQueue().put((name, value, step, time.time()))`"


def points(count: int) -> list[Point]:
    """``count`` metric points over 10 series: name, value, step, timestamp (seconds)."""
    return [(NAMES[i % 10], i * 0.001, i // 10, BASE_TIME + i * 1e-4) for i in range(count)]


def visible_points(uri: str, run_id: str) -> int:
    client = MlflowClient(uri)
    return sum(len(client.get_metric_history(run_id, name)) for name in NAMES)


def new_run(uri: str, experiment: str) -> str:
    client = MlflowClient(uri)
    return str(client.create_run(client.create_experiment(experiment)).info.run_id)


def raw_log_batch(uri: str, data: list[Point]) -> float:
    """Metrics/s of ``MlflowClient.log_batch`` with 1000 metrics per call."""
    client = MlflowClient(uri)
    run_id = new_run(uri, f"raw-{time.monotonic_ns()}")
    began = time.perf_counter()
    for start in range(0, len(data), 1000):
        chunk = data[start : start + 1000]
        client.log_batch(run_id, metrics=[MlflowMetric(n, v, int(t * 1000 + 0.5), s) for n, v, s, t in chunk], synchronous=True)
    seconds = time.perf_counter() - began
    assert visible_points(uri, run_id) == len(data)
    return len(data) / seconds


@contextlib.contextmanager
def time_in_log_batch() -> Iterator[list[float]]:
    """Add up the seconds spent inside ``MlflowClient.log_batch`` (any thread) while the block runs."""
    spent = [0.0]
    original = MlflowClient.log_batch

    def timed(self: MlflowClient, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    MlflowClient.log_batch = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        MlflowClient.log_batch = original  # type: ignore[method-assign]


def tracelet_delivery(uri: str, data: list[Point]) -> tuple[float, float]:
    """Metrics/s from the first ``tracelet.log_metric`` until ``flush()`` returned (all stored),
    and the share of that time the worker spent inside ``MlflowClient.log_batch``."""
    config = {"mlflow": {"tracking_uri": uri}, "queue_size": 2 * len(data)}
    run = tracelet.start(project=f"tracelet-{time.monotonic_ns()}", backends=["mlflow"], config=config)
    assert run.flush(timeout=120)  # the MLflow run exists: its creation is not timed
    log_metric = tracelet.log_metric
    with time_in_log_batch() as in_mlflow:
        began = time.perf_counter()
        for name, value, step, timestamp in data:
            log_metric(name, value, step, timestamp)
        assert run.flush(timeout=600)
        seconds = time.perf_counter() - began
    backend = run.get_plugin("mlflow")
    with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints run links when a server run ends
        assert run.stop(timeout=60)
    assert visible_points(uri, backend.run_id) == len(data)  # type: ignore[attr-defined]
    return len(data) / seconds, in_mlflow[0] / seconds


def naive_fluent(uri: str, data: list[Point]) -> float:
    """Metrics/s of one fluent ``mlflow.log_metric`` call per point (what many scripts do)."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(f"naive-{time.monotonic_ns()}")
    with mlflow.start_run() as run:
        began = time.perf_counter()
        for name, value, step, timestamp in data:
            mlflow.log_metric(name, value, step=step, timestamp=int(timestamp * 1000 + 0.5))
        seconds = time.perf_counter() - began
    assert visible_points(uri, run.info.run_id) == len(data)
    return len(data) / seconds


def caller_cost(uri: str, calls: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Median per-call (CPU µs on the calling thread, wall µs) of each way of logging."""
    results: dict[str, tuple[float, float]] = {}

    def measure(label: str, loop: Callable[[int], None]) -> None:
        cpu, wall = [], []
        for _ in range(rounds):
            cpu_start, wall_start = time.thread_time(), time.perf_counter()
            loop(calls)
            cpu.append((time.thread_time() - cpu_start) / calls * 1e6)
            wall.append((time.perf_counter() - wall_start) / calls * 1e6)
        results[label] = (statistics.median(cpu), statistics.median(wall))

    put = queue.SimpleQueue().put
    now = time.time

    def simple_queue(count: int) -> None:
        for step in range(count):
            put(("train/loss", 0.5, step, now()))

    measure(BASELINE, simple_queue)

    log_metric = tracelet.log_metric

    def tracelet_log(count: int) -> None:
        for step in range(count):
            log_metric("train/loss", 0.5, step)

    # The core's own hot path, its in-memory recording backend delivering, then the same with MLflow.
    for backend, label in (("recording", "core hot path"), ("mlflow", "MLflow backend")):
        config = {"mlflow": {"tracking_uri": uri}, "queue_size": 2 * calls * rounds}
        run = tracelet.start(project=f"caller-{time.monotonic_ns()}", backends=[backend], config=config)
        assert run.flush(timeout=120)
        measure(f"`tracelet.log_metric`, {label} delivering", tracelet_log)
        assert run.stop(timeout=600), run.stats()[backend]
    return results


def fresh_sqlite(directory: Path, name: str) -> str:
    uri = f"sqlite:///{directory / name}.db"
    MlflowClient(uri).search_experiments()  # creates MLflow's tables now, outside any timing
    return uri


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(directory: Path) -> Iterator[str]:
    """A local ``mlflow server`` (sqlite store, one worker); its process group is stopped at exit."""
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{directory}/server.db", "--artifacts-destination", str(directory / "artifacts"),
    ]  # fmt: skip
    with (directory / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("mlflow server did not start; see server.log") from None
                time.sleep(0.25)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def delivery_rows(store: str, uri_for: Callable[[str], str], count: int, naive_count: int, repeats: int) -> list[str]:
    """Raw and Tracelet runs interleaved, ``repeats`` times each, medians shown; naive once."""
    data = points(count)
    raw_log_batch(uri_for("warm-up"), points(2000))  # the first requests to a store or server pay its warm-up
    raw_rates, our_rates, shares = [], [], []
    for repeat in range(repeats):
        raw_rates.append(raw_log_batch(uri_for(f"raw-{repeat}"), data))
        rate, share = tracelet_delivery(uri_for(f"tracelet-{repeat}"), data)
        our_rates.append(rate)
        shares.append(share)
    raw, ours = statistics.median(raw_rates), statistics.median(our_rates)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # MLflow prints run links
        naive = naive_fluent(uri_for("naive"), points(naive_count))
    spread = f"{min(raw_rates):,.0f}-{max(raw_rates):,.0f}"
    return [
        f"| {store} | raw `MlflowClient.log_batch`, 1000 per call | {count:,} | {raw:,.0f} (range {spread}) | 1.00x |",
        f"| {store} | `tracelet.log_metric` until `flush()` returns | {count:,} | "
        f"{ours:,.0f} (range {min(our_rates):,.0f}-{max(our_rates):,.0f}) | **{ours / raw:.2f}x** (goal >= 0.9x); "
        f"{statistics.median(shares):.1%} of it inside `log_batch` |",
        f"| {store} | naive `mlflow.log_metric` per call | {naive_count:,} | {naive:,.0f} | "
        f"{naive / raw:.3f}x: tracelet is **{ours / naive:,.0f}x** faster (goal >= 100x) |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics", type=int, default=20_000, help="points per end-to-end measurement")
    parser.add_argument("--naive-metrics", type=int, default=500, help="points for the naive per-call baseline")
    parser.add_argument("--calls", type=int, default=20_000, help="log calls per caller-cost round")
    parser.add_argument("--rounds", type=int, default=5, help="caller-cost rounds (the median is shown)")
    parser.add_argument("--repeats", type=int, default=5, help="end-to-end repetitions (the median is shown)")
    parser.add_argument("--no-server", action="store_true", help="skip the mlflow server measurements")
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tracelet-bench-") as temporary:
        root = Path(temporary)
        os.environ["HOME"] = str(root)  # MLflow writes under ~
        python = sys.version.split()[0]
        print(f"mlflow {mlflow.__version__}, tracelet {tracelet.__version__}, Python {python}, {os.cpu_count()} CPUs\n")
        print("| store | how | metrics | metrics/s | ratio to raw log_batch |")
        print("|---|---|---:|---:|---|")
        for row in delivery_rows(
            "sqlite", lambda name: fresh_sqlite(root, name), arguments.metrics, arguments.naive_metrics, arguments.repeats
        ):
            print(row, flush=True)
        if not arguments.no_server:
            (root / "server").mkdir()
            with mlflow_server(root / "server") as url:
                for row in delivery_rows(
                    "server", lambda _name: url, arguments.metrics, arguments.naive_metrics // 2, arguments.repeats
                ):
                    print(row, flush=True)

        costs = caller_cost(fresh_sqlite(root, "caller"), arguments.calls, arguments.rounds)
        baseline_cpu = costs[BASELINE][0]
        print(f"\nCaller-side cost per call, median of {arguments.rounds} rounds of {arguments.calls:,} calls:\n")
        print("| call | CPU µs (thread_time) | wall µs | CPU ratio |")
        print("|---|---:|---:|---:|")
        for label, (cpu, wall) in costs.items():
            print(f"| {label} | {cpu:.2f} | {wall:.2f} | {cpu / baseline_cpu:.2f}x |")


if __name__ == "__main__":
    main()
