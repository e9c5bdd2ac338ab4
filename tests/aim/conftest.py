"""Fixtures for the AIM backend's tests: real AIM repositories in temp dirs, no mocks.

- HOME points at a temp dir for the whole session (aim writes nothing there
  today; it is the house rule for every tool's settings).
- ``tracelet_plugins``: every run a test starts loads the ``aim`` plugin.
- ``aim_server``: a real ``aim server`` (AIM's remote tracking server) on
  127.0.0.1 with a temp repository, one per session, stopped with its whole
  process group.
- ``read_aim_run(repo, run_hash)``: the run read back through aim's own SDK
  (``aim.Repo(path).get_run``), into the conformance suite's neutral form
  (tests/readers/aim_reader.py, shared with tests/all; re-exported here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from aim_reader import read_aim_run

__all__ = ["AIM_CLI", "AimServer", "free_port", "read_aim_run", "stop_group", "wait_listening"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.delenv("AIM_REPO_NAME", raising=False)
        yield home


@pytest.fixture
def tracelet_plugins() -> Sequence[str]:
    return ["aim"]


_SERVER_START_TIMEOUT = 90.0
AIM_CLI = Path(sys.executable).with_name("aim")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"aim exited with {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.25)
    raise RuntimeError(f"aim not listening after {_SERVER_START_TIMEOUT} s:\n{log.read_text(errors='replace')[-4000:]}")


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (aim runs uvicorn in a child), SIGKILL what is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@attrs.define
class AimServer:
    """A running ``aim server``: its ``uri`` (``aim://127.0.0.1:PORT``) and the directory of its repository."""

    uri: str
    repo: Path
    port: int
    processes: list[subprocess.Popen[bytes]] = attrs.Factory(list)

    def start(self) -> None:
        log = self.repo.parent / f"server-{len(self.processes)}.log"
        command = [str(AIM_CLI), "server", "--repo", str(self.repo), "--host", "127.0.0.1", "--port", str(self.port), "--yes"]
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.repo)
        self.processes.append(process)
        wait_listening(self.port, process, log)

    def stop(self) -> None:
        stop_group(self.processes[-1])


@pytest.fixture(scope="session")
def aim_server(tmp_path_factory: pytest.TempPathFactory, _isolated_home: Path) -> Iterator[AimServer]:
    """A real ``aim server`` on 127.0.0.1 over a temp repository, one per session."""
    root = tmp_path_factory.mktemp("aim-server")
    repo = root / "repo"
    repo.mkdir()
    port = free_port()
    server = AimServer(f"aim://127.0.0.1:{port}", repo, port)
    try:
        server.start()
        yield server
    finally:
        # aim closes its clients at interpreter exit, each talking to its server: close them while it answers.
        from aim.ext.cleanup import AutoClean

        AutoClean._cleanup()
        for process in server.processes:
            stop_group(process)
