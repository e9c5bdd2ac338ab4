"""The W&B backend's ``tracelet_backend_check`` (``tracelet doctor``): offline, the directory W&B writes in;
online, W&B's server (a real local HTTP server, a closed port) and the API key."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracelet_wandb import WandbBackend
from tracelet_wandb.settings import WandbSettings


def _check(**settings: object) -> str:
    return WandbBackend(WandbSettings(**settings)).tracelet_backend_check(timeout=5)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers every request with 404 (as W&B's API root may)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_offline_the_directory_must_take_a_file(tmp_path: Path) -> None:
    assert _check(mode="offline", dir=str(tmp_path)) == f"offline: {tmp_path}/wandb: can be created in {tmp_path}"
    (tmp_path / "wandb").mkdir()
    assert _check(mode="offline", dir=str(tmp_path)) == f"offline: {tmp_path}/wandb: writable"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(NotADirectoryError) as raised:
        _check(mode="offline", dir=str(blocker))
    assert str(raised.value) == f"{blocker}/wandb: {blocker} is a file, not a directory"


def test_online_an_unreachable_server_is_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with pytest.raises(ConnectionError) as raised:
        _check(mode="online")
    assert str(raised.value) == f"{url}: connection refused"


def test_online_a_reachable_server_needs_an_api_key(http_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", http_server)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(PermissionError) as raised:
        _check(mode="online")
    assert str(raised.value) == f"{http_server} answers, but no W&B API key: run `wandb login` or set WANDB_API_KEY"
    (tmp_path / "netrc").write_text("machine 127.0.0.1\n  login user\n  password " + "k" * 40 + "\n")
    assert _check(mode="online") == f"online: {http_server}: HTTP 404, API key found"


def test_disabled_has_nothing_to_reach() -> None:
    assert _check(mode="disabled") == "mode disabled: W&B records nothing"
