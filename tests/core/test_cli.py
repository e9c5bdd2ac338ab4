"""The ``tracelet`` command as users meet it: help texts, tables that fit the terminal, ``doctor``, progress.

Commands run in a subprocess (``python -m tracelet.cli``), piped or on a real
pseudo-terminal, in a working directory of their own; the backends are the
fixture plugins (tests/core/plugins/tracelet-fixtures): ``fixture-picky``'s
check answers unless ``down``, ``fixture-hanging``'s never answers.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

import tracelet
from tracelet.console import Progress
from tracelet.doctor import GRACE, diagnose
from tracelet.spool import BackendSpool, encode_records
from tracelet_fixtures import hanging

COMMANDS = ("plugins", "config", "doctor", "replay", "sync", "new-plugin")
LONG = "a-project-name-" + "x" * 150 + "-end"


@pytest.fixture(autouse=True)
def _workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml of the repository: only the environment configures
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("TRACELET_BACKENDS", raising=False)


def _tracelet(*arguments: str, timeout: float = 120, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    return subprocess.run(
        [sys.executable, "-m", "tracelet.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**env, **environment},
    )


def _spool(root: Path, backend: str, count: int) -> BackendSpool:
    """A finished run's spool for ``backend`` holding ``count`` metrics (what a run whose backend was down leaves)."""
    run = tracelet.RunInfo(os.urandom(16).hex(), "p", "train", time.time(), "0", (backend,), (backend,))
    spool = BackendSpool(root / run.id / backend, run, backend, fsync_interval=0.0)
    frames, _ = encode_records([tracelet.Metric("loss", float(step), step, 1.0) for step in range(count)])
    spool.append(frames, count)
    assert spool.close(tracelet.RunStatus.FINISHED) is True
    return spool


# --- help -------------------------------------------------------------------------------------------------------


def test_tracelet_help_lists_every_command_on_one_line_and_gives_examples() -> None:
    done = _tracelet("--help", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "usage: tracelet [--version] [--help] <command> [<args>]"
    listed = lines[lines.index("commands:") + 1 : lines.index("commands:") + 1 + len(COMMANDS)]
    assert [line.split()[0] for line in listed] == list(COMMANDS)
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    examples = lines[lines.index("examples:") + 1 :]
    assert examples[0].startswith("  tracelet doctor ")
    assert "<command>" not in "\n".join(listed)  # no argparse metavar line above the commands


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_says_what_it_does_and_shows_examples(command: str) -> None:
    done = _tracelet(command, "--help", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"usage: tracelet {command} ")
    summary = lines[lines.index("") + 1]
    assert summary.endswith(".") and len(summary) <= 80  # the one-line summary, as a sentence
    examples = lines[lines.index("examples:") + 1 :]
    assert examples and all(line.startswith(f"  tracelet {command}") or "tracelet" in line for line in examples)
    assert any(line.startswith(f"  tracelet {command}") for line in examples)


# --- tables that fit ----------------------------------------------------------------------------------------------


def test_config_fits_80_columns_and_wraps_a_long_value_keeping_every_character() -> None:
    done = _tracelet("config", COLUMNS="80", TRACELET_PROJECT=LONG)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    start = next(index for index, line in enumerate(lines) if line.startswith("project "))
    row = [lines[start]]
    for line in lines[start + 1 :]:
        if line[: lines[0].index("VALUE")].strip():  # the next key
            break
        row.append(line)
    # The value and the source go on over the next lines, each in its own column: every character is there.
    value_at, source_at = lines[0].index("VALUE"), lines[0].index("SOURCE")
    assert len(row) > 3
    assert "".join(line[value_at:source_at].strip() for line in row) == repr(LONG)
    assert " ".join(line[source_at:].strip() for line in row if line[source_at:].strip()) == "TRACELET_PROJECT (environment)"


def test_config_wide_and_json_give_every_value_whole() -> None:
    wide = _tracelet("config", "--wide", COLUMNS="80", TRACELET_PROJECT=LONG)
    assert wide.returncode == 0, wide.stderr
    (line,) = [line for line in wide.stdout.splitlines() if line.startswith("project ")]
    assert line.split() == ["project", repr(LONG), "TRACELET_PROJECT", "(environment)"]
    as_json = _tracelet("config", "--json", COLUMNS="80", TRACELET_PROJECT=LONG, TRACELET_QUEUE_SIZE="512")
    assert as_json.returncode == 0, as_json.stderr
    settings = {entry["key"]: entry for entry in json.loads(as_json.stdout)}
    assert settings["project"] == {"key": "project", "value": LONG, "source": "TRACELET_PROJECT (environment)"}
    assert settings["queue_size"] == {"key": "queue_size", "value": 512, "source": "TRACELET_QUEUE_SIZE (environment)"}
    assert settings["spool_dir"]["value"] == ".tracelet/spool"


def test_config_piped_without_columns_is_not_cut() -> None:
    done = _tracelet("config", TRACELET_PROJECT=LONG)
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("project ")]
    assert repr(LONG) in line


def test_config_masks_credentials_in_json_too() -> None:
    done = _tracelet("config", "--json", TRACELET_PROJECT="https://user:hunter2@example.com/x")
    settings = {entry["key"]: entry["value"] for entry in json.loads(done.stdout)}
    assert "hunter2" not in done.stdout and settings["project"].startswith("https://")


# --- doctor -------------------------------------------------------------------------------------------------------


def test_doctor_healthy_exits_0_with_every_backend_checked_and_its_settings() -> None:
    done = _tracelet("doctor", "--json", TRACELET_BACKENDS="fixture-picky,recording")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["schema"] == 1 and report["healthy"] is True and report["problems"] == []
    assert report["config_error"] is None and report["timeout"] == 5.0
    picky, recording = report["backends"]
    assert picky["name"] == "fixture-picky" and picky["status"] == "ok" and picky["healthy"] is True
    assert picky["detail"] == "fixture-picky: answers (asked within 5 s)"
    assert {"key": "fixture-picky.down", "value": False, "source": "default"} in picky["settings"]
    assert all(setting["key"].startswith("fixture-picky.") for setting in picky["settings"])
    assert recording["status"] == "not checked" and recording["healthy"] is True
    assert recording["detail"] == "the plugin has no tracelet_backend_check hook"
    plugins = {plugin["name"]: plugin for plugin in report["plugins"]}
    assert plugins["fixture-broken"]["status"] == "disabled"  # TRACELET_DISABLE_PLUGINS, as in the tox env
    assert plugins["recording"] == {
        "name": "recording",
        "kind": "backend",
        "distribution": "tracelet-core",
        "version": tracelet.__version__,
        "status": "loaded",
        "error": None,
    }
    assert report["spools"] == [] and report["spool_dir"] == str(Path.cwd() / ".tracelet/spool")


def test_doctor_with_a_backend_down_exits_1_and_says_why() -> None:
    environment = {"TRACELET_BACKENDS": "fixture-picky", "TRACELET_FIXTURE_PICKY_DOWN": "true", "COLUMNS": "200"}
    done = _tracelet("doctor", **environment)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith("fixture-picky: failed (") and line.endswith("s): ConnectionError: fixture-picky: connection refused")
        for line in lines
    ), lines
    assert "  fixture-picky.down          True   TRACELET_FIXTURE_PICKY_DOWN (environment)" in lines
    assert lines[-2:] == ["unhealthy:", "  backend fixture-picky: ConnectionError: fixture-picky: connection refused"]
    report = json.loads(_tracelet("doctor", "--json", **environment).stdout)
    assert report["healthy"] is False
    assert report["backends"][0]["status"] == "failed"
    assert report["problems"] == ["backend fixture-picky: ConnectionError: fixture-picky: connection refused"]


def test_doctor_gives_up_on_a_backend_that_does_not_answer_within_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACELET_BACKENDS", "fixture-picky,fixture-hanging")
    started = time.monotonic()
    report = diagnose(timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + GRACE + 0.5, elapsed  # both checks run at once: the answering one does not add to the wait
    picky, stuck = report.backends
    assert picky.status == "ok"
    assert (stuck.name, stuck.status, stuck.detail, stuck.seconds) == ("fixture-hanging", "timeout", "no answer within 1 s", 1.5)
    assert report.problems == ["backend fixture-hanging: no answer within 1 s"]
    hanging.release()  # the abandoned check thread ends too
    # The command: exit code 1, and it returns, though the check thread is still blocked when it exits.
    started = time.monotonic()
    hanging.rearm()
    done = _tracelet("doctor", "--timeout", "1", "--json", TRACELET_BACKENDS="fixture-hanging")
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["backends"][0]["status"] == "timeout"
    assert time.monotonic() - started < 1 + 20  # python's start and discovery on a busy 2-core machine


def test_doctor_shows_a_plugin_that_failed_to_load_with_why_and_is_unhealthy() -> None:
    done = _tracelet("doctor", "--json", TRACELET_BACKENDS="recording", TRACELET_DISABLE_PLUGINS="")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    (broken,) = [plugin for plugin in report["plugins"] if plugin["name"] == "fixture-broken"]
    assert broken["status"] == "failed" and broken["kind"] is None
    assert broken["error"].startswith("ModuleNotFoundError: No module named 'tracelet_fixtures_missing_dependency' (at ")
    assert broken["error"].endswith(f"{os.sep}tracelet_fixtures{os.sep}broken.py:3)")
    assert report["problems"] == [f"plugin fixture-broken failed to load: {broken['error']}"]
    text = _tracelet("doctor", TRACELET_BACKENDS="recording", TRACELET_DISABLE_PLUGINS="", COLUMNS="400")
    assert any(
        line.startswith("  fixture-broken     -          failed: ModuleNotFoundError: ") for line in text.stdout.splitlines()
    )


def test_doctor_lists_spools_left_behind_with_their_size_and_age() -> None:
    root = Path(".tracelet/spool")
    old = _spool(root, "recording", 300)
    held = _spool(root, "fixture-picky", 10)
    two_hours_ago = time.time() - 7200
    for path in [old.directory, *old.directory.rglob("*")]:
        os.utime(path, (two_hours_ago, two_hours_ago))
    size = sum(path.stat().st_size for path in old.directory.rglob("*") if path.is_file())
    nobody = tracelet.RunInfo("", "", "", 0.0, "", (), ())
    lock = BackendSpool(held.directory, nobody, "fixture-picky", fsync_interval=0.0, create_lock=False)
    assert lock.acquire()  # a live process still delivering it
    try:
        done = _tracelet("doctor", "--json", TRACELET_BACKENDS="recording")
        text = _tracelet("doctor", TRACELET_BACKENDS="recording", COLUMNS="200")
    finally:
        lock.release()
    assert done.returncode == 0, done.stdout + done.stderr  # left spools are listed, not a failure
    spools = json.loads(done.stdout)["spools"]
    assert [(spool["backend"], spool["in_use"]) for spool in spools] == [("recording", False), ("fixture-picky", True)]
    first = spools[0]
    assert first["path"] == str(old.directory.absolute()) and first["run_id"] == old.directory.parent.name
    assert first["bytes"] == size and size > 300 * 10
    assert 7200 <= first["age_seconds"] < 7200 + 120
    lines = text.stdout.splitlines()
    header = lines.index(
        f"spools left behind in {Path.cwd() / '.tracelet/spool'} "
        "(`tracelet replay` delivers them; `tracelet sync` the @offline ones):"
    )
    assert lines[header + 1].split() == ["RUN", "BACKEND", "SIZE", "AGE", "STATE"]
    assert lines[header + 2].split() == [old.directory.parent.name, "recording", f"{size / 1024:.1f}", "KiB", "2", "h"]
    assert lines[header + 3].split()[1:] == ["fixture-picky", *lines[header + 3].split()[2:4], "0", "s", "in", "use"]


def test_doctor_lists_an_offline_run_waiting_for_sync() -> None:
    run = tracelet.start(backends=["recording"], mode="offline")
    for step in range(50):
        run.log_metric("loss", float(step), step=step)
    assert run.stop(timeout=30)
    done = _tracelet("doctor", "--json", TRACELET_BACKENDS="recording")
    assert done.returncode == 0, done.stdout + done.stderr
    (spool,) = json.loads(done.stdout)["spools"]
    assert (spool["run_id"], spool["backend"], spool["in_use"]) == (run.id, "@offline", False)
    assert spool["path"] == str((Path(".tracelet/spool") / run.id / "@offline").absolute())
    assert spool["bytes"] > 50 * 10


def test_doctor_with_a_bad_configuration_exits_2() -> None:
    done = _tracelet("doctor", "--json", TRACELET_QUEUE_SIZE="lots")
    assert done.returncode == 2
    report = json.loads(done.stdout)
    assert report["healthy"] is False and report["backends"] == []
    assert report["config_error"] == (
        "invalid configuration value for 'queue_size' from TRACELET_QUEUE_SIZE (environment): "
        "'lots' is not a valid int (invalid literal for int() with base 10: 'lots')"
    )
    assert report["problems"] == [f"configuration: {report['config_error']}"]


# --- progress -----------------------------------------------------------------------------------------------------


def test_replay_piped_prints_plain_lines() -> None:
    spool = _spool(Path("spool"), "recording", 500)
    done = _tracelet("replay", "spool")
    assert done.returncode == 0, done.stderr
    run_id = spool.directory.parent.name
    assert done.stderr.splitlines() == ["recording train: 100% 500 records", f"recording run {run_id}: 500 records sent, done"]
    assert "\r" not in done.stderr and "\x1b" not in done.stderr


def test_replay_on_a_terminal_draws_a_bar() -> None:
    _spool(Path("spool"), "recording", 500)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100x24 terminal
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tracelet.cli", "replay", "spool"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**env, "TERM": "xterm-256color"},
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the process closed its end
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(timeout=30) == 0
    text = output.decode("utf-8", "replace")
    assert "━" in text  # rich's bar
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "recording train" in text and "100%" in text and "500 records" in text
    assert "recording train: 100% 500 records" not in text  # not the plain line


def test_progress_plain_lines_come_at_most_every_interval_and_once_at_the_end() -> None:
    stream = io.StringIO()
    with Progress(stream, interval=0.0) as progress:
        task = progress.task("mlflow run-1", total=400)
        task.advance(100, 10)
        task.advance(100, 20)
        task.advance(0, 20)  # nothing new: no line
        task.advance(200, 40)
        task.finish()  # the same line as the last one: not printed twice
    assert stream.getvalue().splitlines() == [
        "mlflow run-1: 25% 10 records",
        "mlflow run-1: 50% 20 records",
        "mlflow run-1: 100% 40 records",
    ]
    quiet = io.StringIO()
    with Progress(quiet, interval=3600.0, unit="batches") as progress:
        task = progress.task("wandb run-2", total=0)
        task.advance(0, 3)
        task.finish()
    assert quiet.getvalue() == "wandb run-2: 100% 3 batches\n"


def test_without_rich_the_commands_print_whole_rows_and_plain_progress() -> None:
    """The cli extra is optional: without rich, tables come whole (as ``--wide``) and progress as plain lines."""
    spool = _spool(Path("spool"), "recording", 20)
    script = "import sys; sys.modules['rich'] = None; from tracelet.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "COLUMNS": "80", "TRACELET_PROJECT": LONG}
    config = subprocess.run([sys.executable, "-c", script, "config"], capture_output=True, text=True, env=env, timeout=120)
    assert config.returncode == 0, config.stderr
    (line,) = [line for line in config.stdout.splitlines() if line.startswith("project ")]
    assert line.split() == ["project", repr(LONG), "TRACELET_PROJECT", "(environment)"]
    replayed = subprocess.run(
        [sys.executable, "-c", script, "replay", "spool"], capture_output=True, text=True, env=env, timeout=120
    )
    assert replayed.returncode == 0, replayed.stderr
    run_id = spool.directory.parent.name
    assert replayed.stderr.splitlines() == ["recording train: 100% 20 records", f"recording run {run_id}: 20 records sent, done"]
