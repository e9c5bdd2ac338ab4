"""The ClearML backend's ``tracelet_backend_check`` (``tracelet doctor``): offline, ClearML's offline
directory; online, the credentials and the ``api_server`` (a closed port on 127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tracelet_clearml import ClearmlBackend
from tracelet_clearml.settings import ClearmlSettings


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_offline_the_offline_directory_must_take_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "cache"))
    check = ClearmlBackend(ClearmlSettings(offline=True)).tracelet_backend_check
    assert check(timeout=5) == f"offline: {tmp_path}/cache/offline: can be created in {tmp_path}"
    (tmp_path / "cache" / "offline").mkdir(parents=True)
    assert check(timeout=5) == f"offline: {tmp_path}/cache/offline: writable"


def test_online_an_unreachable_api_server_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("CLEARML_API_HOST", url)
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "access")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "secret")
    with pytest.raises(ConnectionError) as raised:
        ClearmlBackend(ClearmlSettings(offline=False)).tracelet_backend_check(timeout=5)
    assert str(raised.value) == f"{url}/debug.ping: connection refused"


def test_online_without_credentials_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("CLEARML_API_HOST", url)
    for variable in ("CLEARML_API_ACCESS_KEY", "CLEARML_API_SECRET_KEY", "TRAINS_API_ACCESS_KEY", "TRAINS_API_SECRET_KEY"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(PermissionError) as raised:
        ClearmlBackend(ClearmlSettings(offline=False)).tracelet_backend_check(timeout=5)
    assert str(raised.value) == (
        f"no ClearML credentials for {url}: run `clearml-init` (or set CLEARML_API_HOST and "
        "CLEARML_API_ACCESS_KEY / CLEARML_API_SECRET_KEY), or go offline with TRACELET_CLEARML_OFFLINE=true"
    )
