"""Offline runs synced to MLflow, and a preempted job resumed into the same MLflow run (docs/offline-and-resume.md).

Real processes and signals, a real sqlite store, read back with ``MlflowClient``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

from mlflow import MlflowClient

from tracelet.replay import sync
from tracelet.testing import RecordingBackend

_TRACELET_CLI = Path(sys.executable).with_name("tracelet")


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without Tracelet settings (the tests pass their own), strict mode on."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_")}
    return kept | {"TRACELET_STRICT": "1", "PYTHONUNBUFFERED": "1"} | extra


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def _sync_command(cwd: Path, *arguments: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_TRACELET_CLI), "sync", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=_environment(**environment),
    )


def test_an_offline_run_sigkilled_then_synced_to_recording_and_to_mlflow_gets_every_point_once(
    sqlite_uri: str, tmp_path: Path
) -> None:
    experiment = f"offline-{uuid.uuid4().hex[:8]}"
    script = f"""
        import sys, time
        import tracelet
        run = tracelet.start(project={experiment!r}, backends=["mlflow"], mode="offline")
        tracelet.log_params({{"lr": 0.01, "optimizer": "adam"}})
        step = 0
        while True:
            tracelet.log_metric("loss", 1.0 / (step + 1), step=step)
            if step % 200 == 0:
                print(step, "mlflow" in sys.modules, flush=True)
            step += 1
            time.sleep(0.0005)
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        printed = 0
        while printed < 3000:
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else ""
            number, imported = line.split()
            assert imported == "False"  # offline: the backend's library is never imported
            printed = int(number)
        time.sleep(1.0)  # the documented window (batch_linger + a router pass), with a wide margin
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        _stop(process)
    root = tmp_path / ".tracelet/spool"

    # Synced to the recording backend first (in process, to read what it received) ...
    (recorded,) = sync(root, backends=["recording"], progress=None)
    backend = recorded.plugin
    assert isinstance(backend, RecordingBackend) and recorded.ok
    steps = [m.step for m in backend.metrics]
    assert steps == list(range(len(steps))) and len(steps) > printed
    assert backend.params == {"lr": 0.01, "optimizer": "adam"}

    # ... then to MLflow, from the command line, with today's tracking URI.
    done = _sync_command(tmp_path, "--backend", "mlflow", TRACELET_MLFLOW_TRACKING_URI=sqlite_uri)
    assert done.returncode == 0, done.stderr
    assert f"mlflow run {recorded.run_id}: {len(steps) + 2} records sent, done" in done.stderr
    client = MlflowClient(sqlite_uri)
    (stored,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(step, 1.0 / (step + 1)) for step in steps]
    assert stored.data.params == {"lr": "0.01", "optimizer": "adam"}
    assert stored.info.status == "KILLED"  # the offline run never stopped

    # A second sync sends nothing: to either backend.
    again = _sync_command(tmp_path, "--backend", "mlflow", "--backend", "recording", TRACELET_MLFLOW_TRACKING_URI=sqlite_uri)
    assert again.returncode == 0, again.stderr
    assert again.stderr.splitlines() == [
        f"mlflow run {recorded.run_id}: already synced, nothing to send",
        f"recording run {recorded.run_id}: already synced, nothing to send",
    ]
    assert len(client.get_metric_history(stored.info.run_id, "loss")) == len(steps)
    assert len(client.search_runs([stored.info.experiment_id])) == 1


def test_a_job_preempted_by_sigterm_and_restarted_with_its_run_id_continues_one_mlflow_run(
    sqlite_uri: str, tmp_path: Path
) -> None:
    experiment = f"resume-{uuid.uuid4().hex[:8]}"
    steps = 300
    script = Path(__file__).with_name("resume_script.py")
    environment = _environment(TRACELET_RUN_ID="slurm-4242")

    def job() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), sqlite_uri, experiment, str(steps)],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    first = job()
    try:
        assert first.stdout is not None
        assert first.stdout.readline() == "started at 0\n", first.stderr.read() if first.stderr else ""
        while first.stdout.readline() != "step 100\n":
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
        first.send_signal(signal.SIGTERM)  # the scheduler preempts the job
        assert first.wait(60) == -signal.SIGTERM
    finally:
        _stop(first)
    client = MlflowClient(sqlite_uri)
    (killed,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert killed.info.status == "KILLED"
    resumed_at = len(client.get_metric_history(killed.info.run_id, "loss"))
    assert 100 < resumed_at < steps

    second = job()
    try:
        out, err = second.communicate(timeout=120)
    finally:
        _stop(second)
    assert second.returncode == 0, err
    assert out.splitlines()[0] == f"started at {resumed_at}" and out.splitlines()[-1] == "done"

    runs = client.search_runs([killed.info.experiment_id])
    index = (tmp_path / ".tracelet/spool/.runs/slurm-4242.json").read_text()
    assert len(runs) == 1, (index, [(run.info.run_id, run.info.status) for run in runs], err)
    (stored,) = runs  # one run: the same one, continued
    assert stored.info.run_id == killed.info.run_id and stored.info.status == "FINISHED"
    history = client.get_metric_history(stored.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(step, 1.0 / (step + 1)) for step in range(steps)]
    assert stored.data.params == {"lr": "0.01", "steps": str(steps)}
    assert stored.data.tags["tracelet.run_id"] == "slurm-4242"
    assert not any((tmp_path / ".tracelet/spool").glob("slurm-4242/*"))  # nothing left to replay
