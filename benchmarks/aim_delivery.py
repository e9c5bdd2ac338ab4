"""Delivery to AIM through Tracelet against raw ``aim.Run.track`` of the same points, in fresh interpreters.

Each measurement runs in a new interpreter on a new repository (local) or a new
run on one ``aim server`` (``--server``), and the two kinds alternate:
``raw, tracelet, raw, tracelet, ...``. A pair's ratio is tracelet's points/s over
the raw path's; the figure is the median of the pairs.

- raw: ``Run.track(value, name, step, context={"subset": "train"})`` per point
  (the same name and context Tracelet maps ``train/m<k>`` to), timed from the first
  call until AIM has everything (local: the last call returned; server: aim's
  client queue drained);
- tracelet: ``tracelet.log_metric("train/m<k>", ...)`` flat out, then ``flush()``;
  timed from the first call until ``flush()`` returned (everything stored).

``--caller``: CPU time of the calling thread per ``tracelet.log_metric`` while the
AIM backend delivers, against ``queue.SimpleQueue.put`` of the same tuple.

Run: ``.tox/aim/bin/python benchmarks/aim_delivery.py [--pairs 5] [--metrics 20000] [--server] [--caller]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERIES = 10


def points(count: int) -> list[tuple[str, float, int, float]]:
    now = time.time()
    return [(f"m{index % SERIES}", index * 0.5, index // SERIES, now + index * 1e-6) for index in range(count)]


def measure(kind: str, count: int, repo: str) -> float:
    """One measurement in this interpreter: points/s."""
    data = points(count)
    if kind == "raw":
        from aim.sdk.run import Run

        run = Run(repo=repo, system_tracking_interval=None, capture_terminal_logs=False, log_system_params=False)
        context = {"subset": "train"}
        began = time.perf_counter()
        for name, value, step, _ in data:
            run.track(value, name=name, step=step, context=context)
        if repo.startswith("aim://"):
            run.repo._client.get_queue().wait_for_finish()
        seconds = time.perf_counter() - began
        run.close()
        return count / seconds
    import tracelet

    run = tracelet.start(project="bench", backends=["aim"], config={"aim": {"repo": repo}})
    assert run.flush(timeout=120)  # the AIM run exists: its start (~1 s) is not delivery
    began = time.perf_counter()
    for name, value, step, timestamp in data:
        tracelet.log_metric(f"train/{name}", value, step, timestamp)
    assert run.flush(timeout=900)
    seconds = time.perf_counter() - began
    stats = run.stats()["aim"]
    assert run.stop(timeout=120)
    assert stats.delivered == count, stats
    return count / seconds


def caller_cost(count: int, repo: str, rounds: int = 5) -> dict[str, float]:
    """Median CPU µs per call on the calling thread: ``SimpleQueue.put`` and ``tracelet.log_metric`` with AIM on."""
    import tracelet

    sink: queue.SimpleQueue[tuple[str, float, int, float]] = queue.SimpleQueue()
    baseline, logged = [], []
    run = tracelet.start(project="bench", backends=["aim"], config={"aim": {"repo": repo}})
    assert run.flush(timeout=120)
    for round_ in range(rounds):
        began = time.thread_time()
        for step in range(count):
            sink.put(("loss", 0.5, step, time.time()))
        baseline.append((time.thread_time() - began) / count * 1e6)
        began = time.thread_time()
        for step in range(count):
            tracelet.log_metric("loss", 0.5, round_ * count + step)
        logged.append((time.thread_time() - began) / count * 1e6)
        assert run.flush(timeout=900)
    assert run.stop(timeout=120)
    return {"simplequeue_put_us": statistics.median(baseline), "log_metric_us": statistics.median(logged)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    (root / "repo").mkdir()
    command = [str(Path(sys.executable).with_name("aim")), "server", "--repo", str(root / "repo"), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--yes"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"aim://127.0.0.1:{port}"
        time.sleep(0.25)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError("aim server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--metrics", type=int, default=20_000)
    parser.add_argument("--server", action="store_true", help="deliver through a local `aim server`")
    parser.add_argument("--caller", action="store_true", help="caller-side cost per log_metric instead")
    parser.add_argument("--one", choices=["raw", "tracelet", "caller"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    os.environ.setdefault("TRACELET_PLUGINS", "aim")
    if arguments.one == "caller":
        print(json.dumps(caller_cost(arguments.metrics, arguments.repo)))
        return
    if arguments.one:
        print(json.dumps(measure(arguments.one, arguments.metrics, arguments.repo)))
        return
    # Every measurement in a child interpreter: aim flushes its repository at interpreter exit, which must
    # happen before the temporary directory goes (aim's exit cleanup waits without end after an error).
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        if arguments.caller:
            command = [sys.executable, __file__, "--one", "caller", "--metrics", str(arguments.metrics), "--repo", str(root)]
            print(subprocess.run(command, check=True, capture_output=True, text=True, cwd=root).stdout.strip().splitlines()[-1])
            return
        server = None
        if arguments.server:
            server, uri = _start_server(root)
        try:
            ratios = []
            for pair in range(arguments.pairs):
                rates = {}
                for kind in ("raw", "tracelet"):
                    repo = uri if server else str(root / f"{kind}-{pair}")
                    output = subprocess.run(
                        [sys.executable, __file__, "--one", kind, "--metrics", str(arguments.metrics), "--repo", repo],
                        check=True,
                        capture_output=True,
                        text=True,
                        cwd=root,  # Tracelet's spool directory goes there, not into the caller's directory
                    ).stdout
                    rates[kind] = float(output.strip().splitlines()[-1])
                ratios.append(rates["tracelet"] / rates["raw"])
                print(f"pair {pair + 1}: raw {rates['raw']:,.0f}/s, tracelet {rates['tracelet']:,.0f}/s, ratio {ratios[-1]:.3f}x")
            print(
                f"median of {len(ratios)} pairs: {statistics.median(ratios):.3f}x (min {min(ratios):.3f}, max {max(ratios):.3f})"
            )
        finally:
            if server is not None:
                os.killpg(server.pid, signal.SIGTERM)
                server.wait(timeout=30)


if __name__ == "__main__":
    main()
