"""One script, four trackers: the examples reach MLflow, W&B, ClearML and AIM with the same data.

examples/quickstart.py and examples/lightning_example.py run unchanged (a copy, in a
git repository in a temp dir, in this process) with every plugin installed: the four
backends (MLflow sqlite, W&B offline, ClearML offline, AIM local repository), the system
collector (sampling every second) and the git collector, plus a recording backend that
keeps what Tracelet handed the backends. Each store is then read back with its backend's
reader (tests/readers, shared with the conformance tests) and compared with it: every
metric series point by point, params, tags, artifacts byte for byte, images by pixels,
histograms, texts and the run's status. Any difference fails with a table of them.

Then MLflow broken on purpose (its server's port is closed): the three others get
everything, MLflow's records wait in the spool; an ``mlflow server`` is started on that
port, ``tracelet replay`` delivers them, and the comparison passes for all four.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from parity import BACKENDS, Stores, TruthBackend, differences, expected_run, git_repository, summary, table, truth_plugin

import tracelet
from tracelet.run import Run
from tracelet.testing.conformance import StoredRun

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRACELET_CLI = Path(sys.executable).with_name("tracelet")


@pytest.fixture
def truth() -> Iterator[list[TruthBackend]]:
    """The recording ``truth`` backend, on in every run this test starts; the list of those it made."""
    TruthBackend.made.clear()
    tracelet.register_plugin(truth_plugin())
    try:
        yield TruthBackend.made
    finally:
        tracelet.unregister_plugin("truth")


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    return Stores(tmp_path / "stores", Path.home())


def run_example(name: str, tmp_path: Path, stores: Stores, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Run]:
    """Run ``examples/<name>`` as ``__main__`` from a git repository in ``tmp_path``; its exit code and its run."""
    work = tmp_path / "work"
    work.mkdir()
    script = work / name
    shutil.copy(EXAMPLES / name, script)
    git_repository(work, [script])
    monkeypatch.chdir(work)
    for variable, value in stores.environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TRACELET_SYSTEM_INTERVAL", "1")
    started: list[Run] = []
    start = tracelet.start

    def recording_start(*args: object, **kwargs: object) -> Run:
        run = start(*args, **kwargs)  # type: ignore[arg-type]
        started.append(run)
        return run

    monkeypatch.setattr(tracelet, "start", recording_start)
    code = 0
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit:
        code = int(exit.code or 0)
    assert len(started) == 1, f"the example started {len(started)} runs"
    run = started[0]
    run.stop(timeout=60)  # the Lightning example leaves it to the interpreter's exit; a second stop() is a no-op
    return code, run


def read_stores(run: Run, stores: Stores, backends: tuple[str, ...] = BACKENDS) -> dict[str, StoredRun]:
    stats = run.stats()
    read = {}
    for backend in backends:
        run_id = stats[backend].run_id
        assert run_id is not None, stats[backend]
        read[backend] = stores.read(backend, run_id)
    return read


def assert_parity(expected: StoredRun, stored: dict[str, StoredRun]) -> None:
    found = differences(expected, stored)
    assert not found, f"{len(found)} differences between what Tracelet sent and the stores:\n{table(found)}"


@pytest.mark.slow
def test_quickstart_reaches_four_backends_identically(
    tmp_path: Path, stores: Stores, truth: list[TruthBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, run = run_example("quickstart.py", tmp_path, stores, monkeypatch)
    assert code == 0
    assert set(run.stats().backends) == {*BACKENDS, "truth"}
    expected = expected_run(truth[0])
    counts = summary(expected)
    # What the example logs (25 epochs of 25 batches; 4 images and histograms), the collectors' share beside it.
    assert len(expected.metrics["train/loss"]) == 625
    assert (counts["images"], counts["histograms"]) == (4, 4)
    assert "model/spirals_mlp.pt" in expected.artifacts
    assert any(name.startswith("system/") for name in expected.metrics), sorted(expected.metrics)
    assert any(name.startswith("git.") for name in expected.tags), sorted(expected.tags)
    assert_parity(expected, read_stores(run, stores))


@pytest.mark.slow
def test_lightning_example_reaches_four_backends_identically(
    tmp_path: Path, stores: Stores, truth: list[TruthBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, run = run_example("lightning_example.py", tmp_path, stores, monkeypatch)
    assert code == 0
    expected = expected_run(truth[0])
    # 5 epochs of 16 batches, logged every 5 steps; save_hyperparameters(); the kept checkpoint.
    assert [step for step, _, _ in expected.metrics["train_loss_step"]] == list(range(4, 80, 5))
    assert len(expected.metrics["val_loss"]) == 5
    assert expected.params["learning_rate"] == "0.05"
    assert any(name.endswith(".ckpt") for name in expected.artifacts), sorted(expected.artifacts)
    assert_parity(expected, read_stores(run, stores))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def mlflow_server(root: Path, port: int) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1:``port`` (sqlite, one worker), stopped with its process group."""
    root.mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() < deadline, log.read_text(errors="replace")[-4000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.25)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.mark.slow
def test_mlflow_unreachable_the_others_get_everything_then_replay_completes_it(
    tmp_path: Path, truth: list[TruthBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()  # nothing listens on it: MLflow's server is down for the whole run
    stores = Stores(tmp_path / "stores", Path.home(), mlflow_uri=f"http://127.0.0.1:{port}")
    # MLflow's HTTP client retries a refused connection for minutes by default: fail at once, Tracelet retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("TRACELET_STOP_TIMEOUT", "10")
    code, run = run_example("quickstart.py", tmp_path, stores, monkeypatch)
    assert code == 1  # the example reports that not everything was delivered
    stats = run.stats()
    assert stats["mlflow"].run_id is None
    assert stats["mlflow"].delivered == 0
    assert stats["mlflow"].spooled == stats["truth"].delivered, stats["mlflow"]
    for backend in ("wandb", "clearml", "aim"):
        assert (stats[backend].spooled, stats[backend].failed, stats[backend].dropped) == (0, 0, 0), stats[backend]
    expected = expected_run(truth[0])
    assert_parity(expected, read_stores(run, stores, ("wandb", "clearml", "aim")))

    spool = tmp_path / "work" / ".tracelet" / "spool"
    assert [path.name for path in spool.iterdir()] == [run.id]
    with mlflow_server(tmp_path / "mlflow-server", port) as url:
        environment = {key: value for key, value in os.environ.items() if not key.startswith("TRACELET_")}
        environment.update(stores.environment())
        replayed = subprocess.run(
            [str(TRACELET_CLI), "replay", str(spool)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path / "work",
            env=environment,
        )
        assert replayed.returncode == 0, replayed.stderr
        assert f"mlflow run {run.id}: {stats['mlflow'].spooled} records sent, done" in replayed.stderr
        from mlflow import MlflowClient

        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("tracelet-quickstart")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) == 1, [found.info.run_id for found in runs]
        stored = {backend: stores.read(backend, stats[backend].run_id or "") for backend in ("wandb", "clearml", "aim")}
        stored["mlflow"] = stores.read("mlflow", runs[0].info.run_id)
        assert_parity(expected, stored)
