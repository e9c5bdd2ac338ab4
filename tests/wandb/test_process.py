"""W&B in real processes: the service process after stop(), SIGTERM, an unreachable server and replay, import cost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wandb_reader import read_finished_run, read_offline_run

_SCRIPT = Path(__file__).with_name("process_script.py")
_TRACELET_CLI = Path(sys.executable).with_name("tracelet")


def _environment(**extra: str) -> dict[str, str]:
    """This process's environment without Tracelet settings (the scripts pass their own), strict mode on,
    and without ``WANDB_SERVICE``: a user run of another test in this process started a W&B service there."""
    kept = {name: value for name, value in os.environ.items() if not name.startswith("TRACELET_") and name != "WANDB_SERVICE"}
    return kept | {"TRACELET_STRICT": "1"} | extra


def _run_script(mode: str, tmp_path: Path, points: int, **extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(_SCRIPT), mode, str(tmp_path / "wandb-store"), str(points)]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path, env=_environment(**extra))


def _series(stored_history: list[dict[str, object]], name: str) -> list[tuple[object, object]]:
    return [(row["tracelet/step"], row[name]) for row in stored_history if name in row]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z " not in stat.read_text()  # a zombie has exited


def test_stop_leaves_no_w_and_b_service_process_and_the_script_hooks_alone(tmp_path: Path) -> None:
    (tmp_path / "wandb-store").mkdir()
    finished = _run_script("clean", tmp_path, 200)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout.splitlines()[-1])
    assert report["ok"] is True
    assert len(report["during"]) == 1, report  # the wandb-core service this backend started
    assert report["after"] == [], report  # ... is gone after stop()
    # W&B's ExitHooks replace sys.exit and sys.excepthook when its service starts: the backend undoes it.
    assert report["exit_kept"] is True
    assert report["excepthook_owner"] != "ExitHooks"
    stored = read_offline_run(tmp_path / "wandb-store", report["run_id"])
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(100)]
    assert stored.exit_codes == [0]


def test_sigterm_ends_the_w_and_b_run_killed_with_every_point(tmp_path: Path) -> None:
    (tmp_path / "wandb-store").mkdir()
    points = 1000
    command = [sys.executable, str(_SCRIPT), "sigterm", str(tmp_path / "wandb-store"), str(points)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=_environment(),
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == ["ready"], process.stderr.read() if process.stderr else ""
        service = [int(pid) for pid in ready[1:]]
        assert len(service) == 1
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Tracelet's handler ends the run, then the default handler kills the process as without it.
    assert process.returncode == -signal.SIGTERM, stderr
    (run_dir,) = (tmp_path / "wandb-store" / "wandb").glob("offline-run-*")
    stored = read_offline_run(tmp_path / "wandb-store", run_dir.name.rsplit("-", 1)[1])
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(points)]
    assert stored.config["phase"] == "second"
    assert stored.exit_codes == [143]  # KILLED
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in service) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in service), "the W&B service outlived the killed script"


def test_a_script_that_never_calls_stop_ends_the_w_and_b_run_at_exit_with_every_point(tmp_path: Path) -> None:
    """W&B registers its service's atexit teardown after core's exit handler: the backend makes sure the run
    is stopped (and delivered) before W&B's service goes."""
    (tmp_path / "wandb-store").mkdir()
    points = 2000
    exited = _run_script("exit", tmp_path, points)
    assert exited.returncode == 0, exited.stderr
    assert "backend hook failed" not in exited.stderr, exited.stderr
    (run_dir,) = (tmp_path / "wandb-store" / "wandb").glob("offline-run-*")
    stored = read_offline_run(tmp_path / "wandb-store", run_dir.name.rsplit("-", 1)[1])
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(points)]
    assert stored.exit_codes == [0]
    assert not (tmp_path / ".tracelet" / "spool").exists() or not any((tmp_path / ".tracelet" / "spool").rglob("*.seg"))


def test_a_crash_ends_the_w_and_b_run_failed_with_every_point(tmp_path: Path) -> None:
    (tmp_path / "wandb-store").mkdir()
    crashed = _run_script("crash", tmp_path, 200)
    assert crashed.returncode == 1, crashed.stderr
    assert "RuntimeError: training diverged" in crashed.stderr  # the script's own traceback, printed as without Tracelet
    run_id = crashed.stdout.split()[1]
    stored = read_offline_run(tmp_path / "wandb-store", run_id)
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(100)]
    assert stored.exit_codes == [1]  # FAILED


def test_stop_keeps_its_deadline_while_w_and_b_hangs_in_finish(tmp_path: Path) -> None:
    """The W&B service stopped with SIGSTOP: every call waiting on it hangs, ``run.finish()`` first."""
    (tmp_path / "wandb-store").mkdir()
    points = 1000
    command = [sys.executable, str(_SCRIPT), "hung", str(tmp_path / "wandb-store"), str(points)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    process = subprocess.Popen(command, **pipes, text=True, cwd=tmp_path, env=_environment(), start_new_session=True)
    service: list[int] = []
    try:
        assert process.stdin is not None and process.stdout is not None
        ready = process.stdout.readline().split()
        assert ready[:1] == ["ready"], process.stderr.read() if process.stderr else ""
        service = [int(pid) for pid in ready[1:]]
        assert len(service) == 1
        os.kill(service[0], signal.SIGSTOP)
        process.stdin.write("\n")
        process.stdin.flush()
        report = json.loads(process.stdout.readline())
        os.kill(service[0], signal.SIGCONT)
        process.stdin.write("\n")
        process.stdin.flush()
        _, stderr = process.communicate(timeout=90)
    finally:
        for pid in service:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert report["ok"] is False, report  # W&B did not finish in time ...
    assert report["elapsed"] < 3 + 2.0, report  # ... and stop() returned by its deadline all the same
    assert process.returncode == 0, stderr
    # run.log only hands rows to the service's socket: they were delivered; the service, let go on, wrote them.
    assert report["spooled"] == 0 and report["delivered"] == points + 1, report
    stored = read_finished_run(tmp_path / "wandb-store", report["run_id"])
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(points)]
    # Once the service goes on, the abandoned finish() and W&B's own atexit teardown each end the run.
    assert set(stored.exit_codes) == {0}, stored.exit_codes


_FAKE_KEY = "notarealkey" + "0" * 29


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the probe closes: nothing listens there


def test_unreachable_w_and_b_stop_keeps_its_deadline_and_replay_delivers_everything_once(tmp_path: Path) -> None:
    (tmp_path / "wandb-store").mkdir()
    points = 600
    started = time.monotonic()
    finished = _run_script(
        "unreachable",
        tmp_path,
        points,
        WANDB_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
        WANDB_API_KEY=_FAKE_KEY,  # not a credential: the closed port never sees it
    )
    elapsed = time.monotonic() - started
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout.splitlines()[0])
    assert report["ok"] is False
    assert report["elapsed"] < 3 + 2.0, report  # stop(timeout=3) held its deadline
    assert report["spooled"] == points + 1, report  # every point and the params: nothing lost
    assert report["run_id"] is None  # wandb.init never reached the server
    assert elapsed < 60, "the script's exit waited on W&B past its init_timeout"
    # The API key is W&B's business: it is in no record, log line or spool file.
    assert _FAKE_KEY not in finished.stdout + finished.stderr
    assert not [
        path for path in (tmp_path / ".tracelet").rglob("*") if path.is_file() and _FAKE_KEY.encode() in path.read_bytes()
    ]

    spool = tmp_path / ".tracelet" / "spool"
    environment = _environment(TRACELET_WANDB_MODE="offline", TRACELET_WANDB_DIR=str(tmp_path / "replayed"))
    replayed = subprocess.run(
        [str(_TRACELET_CLI), "replay", str(spool)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"{points + 1} records sent, done" in replayed.stderr
    (run_dir,) = (tmp_path / "replayed" / "wandb").glob("offline-run-*")
    stored = read_offline_run(tmp_path / "replayed", run_dir.name.rsplit("-", 1)[1])
    assert _series(stored.history, "loss") == [(step, 1.0 / (step + 1)) for step in range(points)]
    assert stored.config["phase"] == "first"
    assert stored.exit_codes == [0]
    again = subprocess.run(
        [str(_TRACELET_CLI), "replay", str(spool)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
    )
    assert again.returncode == 0, again.stderr
    assert "nothing to replay" in again.stderr


def test_discovery_imports_no_wandb(tmp_path: Path) -> None:
    code = (
        "import sys, tracelet, tracelet.plugins, tracelet_wandb\n"
        "info = {e.name: e.status for e in tracelet.plugins.discover()}\n"
        "print(str(info.get('wandb')).rpartition('.')[2].lower(), 'wandb' in sys.modules)\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_environment()
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["loaded", "False"]


def test_the_backend_s_service_is_not_advertised_to_child_processes(tmp_path: Path) -> None:
    """W&B puts ``WANDB_SERVICE`` in the environment for children to share its service; the backend's service
    ends with its run, so a DataLoader worker or subprocess of the script must not attach to it."""
    code = (
        "import os, sys, tracelet\n"
        f"run = tracelet.start(backends=['wandb'], config={{'wandb': {{'dir': {str(tmp_path)!r}}}}})\n"
        "run.log_metric('x', 1.0, 0)\n"
        "assert run.flush(timeout=60)\n"
        "print(os.environ.get('WANDB_SERVICE'))\n"
        "assert run.stop(timeout=60)\n"
    )
    command = [sys.executable, "-c", code]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_environment())
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["None"]


def test_a_forked_child_starts_no_w_and_b_process(tmp_path: Path) -> None:
    """A DataLoader worker is a fork of the training process: logging there reaches no W&B and starts no service."""
    code = (
        "import os, sys, time, tracelet\n"
        "from pathlib import Path\n"
        f"run = tracelet.start(backends=['wandb'], config={{'wandb': {{'dir': {str(tmp_path)!r}}}}})\n"
        "assert run.flush(timeout=60)\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    tracelet.log_metric('from_child', 1.0, 0)\n"
        "    time.sleep(1.0)\n"
        "    mine = [p for p in Path('/proc').iterdir() if p.name.isdigit() and (p / 'stat').exists()]\n"
        "    kids = []\n"
        "    for p in mine:\n"
        "        try:\n"
        "            stat = (p / 'stat').read_text()\n"
        "        except OSError:\n"
        "            continue\n"
        "        if int(stat[stat.rindex(')') + 2 :].split()[1]) == os.getpid():\n"
        "            kids.append(stat[stat.index('(') + 1 : stat.rindex(')')])\n"
        "    print('child-processes', kids, flush=True)\n"
        "    os._exit(0)\n"
        "os.waitpid(child, 0)\n"
        "tracelet.log_metric('from_parent', 2.0, 0)\n"
        "assert run.stop(timeout=60)\n"
        "print('run', run.stats()['wandb'].run_id, flush=True)\n"
    )
    command = [sys.executable, "-c", code]
    found = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_environment())
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0] == "child-processes []"
    run_id = lines[1].split()[1]
    stored = read_offline_run(tmp_path, run_id)
    assert [key for row in stored.history for key in row if not key.startswith("_") and key != "tracelet/step"] == ["from_parent"]


def test_start_returns_without_waiting_for_wandb(tmp_path: Path) -> None:
    """Importing wandb and ``wandb.init`` (starting its service) take ~1 s in a fresh process: on the worker."""
    code = (
        "import sys, time, tracelet\n"
        "began = time.perf_counter()\n"
        f"run = tracelet.start(backends=['wandb'], config={{'wandb': {{'dir': {str(tmp_path)!r}}}}})\n"
        "took = time.perf_counter() - began\n"
        "started = run.stats()['wandb'].run_id\n"
        "assert run.flush(timeout=60)\n"
        "print(took, started, run.stats()['wandb'].run_id is not None)\n"
        "assert run.stop(timeout=60)\n"
    )
    command = [sys.executable, "-c", code]
    found = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=_environment())
    assert found.returncode == 0, found.stderr
    took, started, later = found.stdout.split()
    assert (started, later) == ("None", "True")  # start() returned before W&B's run existed
    assert float(took) < 0.5
