"""The AIM backend's ``tracelet_backend_check`` (``tracelet doctor``): a local repository (not created
yet, then holding a run) and AIM's tracking server (a real ``aim server``, a closed port)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import AimServer

import tracelet
from tracelet_aim import AimBackend
from tracelet_aim.settings import AimSettings


def _check(repo: str) -> str:
    return AimBackend(AimSettings(repo=repo)).tracelet_backend_check(timeout=5)


def test_a_local_repository_opens_or_can_be_created(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert _check(str(repo)) == f"no repository yet: {repo}: can be created in {tmp_path} (AIM creates .aim there)"
    run = tracelet.start(backends=["aim"], config={"aim": {"repo": str(repo)}})
    run.log_metric("loss", 0.5, step=1)
    assert run.stop(timeout=60) is True
    assert _check(str(repo)) == f"{repo}/.aim: opens, 1 run"


def test_the_tracking_server_accepts_a_connection_or_is_the_reason(aim_server: AimServer) -> None:
    assert _check(aim_server.uri) == f"127.0.0.1:{aim_server.port}: accepts connections"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])
    with pytest.raises(ConnectionError) as raised:
        _check(f"aim://127.0.0.1:{closed}")
    assert str(raised.value) == f"127.0.0.1:{closed}: connection refused"
