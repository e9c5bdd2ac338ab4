"""Probes a backend's ``tracelet_backend_check`` hook builds on: an HTTP endpoint, a TCP port, a directory.

Each returns a short line saying what answered and raises :class:`ConnectionError`
(or :class:`OSError`) whose message says what was tried and what happened,
as ``tracelet doctor`` shows it. Credentials in a URL are never sent in the
URL nor shown. Exported by :mod:`tracelet.plugin`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["probe_directory", "probe_tcp", "probe_url", "without_credentials"]


def without_credentials(url: str) -> str:
    """``url`` without the ``user:password@`` part of its network location (for messages and requests)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def probe_url(url: str, timeout: float, *, any_status: bool = False) -> str:
    """GET ``url`` within ``timeout`` seconds; ``"<url>: HTTP 200"`` when it answers.

    An answer with a status of 400 or more raises, unless ``any_status`` (the
    host answered, which is all that is asked: a login page, a 404 at the
    root). No connection, a TLS failure or no answer in time raises
    :class:`ConnectionError` naming the URL (without credentials) and the reason.
    """
    import urllib.error
    import urllib.request

    shown = without_credentials(url)
    request = urllib.request.Request(shown, method="GET", headers={"User-Agent": "tracelet-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        if not any_status:
            raise ConnectionError(f"{shown}: HTTP {error.code} {error.reason}") from None
        status = error.code
    except urllib.error.URLError as error:
        raise ConnectionError(f"{shown}: {_reason(error.reason)}") from None
    except (OSError, ValueError) as error:  # a timeout while reading, a malformed URL
        raise ConnectionError(f"{shown}: {_reason(error)}") from None
    return f"{shown}: HTTP {status}"


def probe_tcp(host: str, port: int, timeout: float) -> str:
    """Open (and close) a TCP connection to ``host:port`` within ``timeout`` seconds; ``"host:port: accepts connections"``."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as error:
        raise ConnectionError(f"{host}:{port}: {_reason(error)}") from None
    return f"{host}:{port}: accepts connections"


def probe_directory(path: str | os.PathLike[str]) -> str:
    """Write and remove a file in ``path``, or, when it does not exist yet, in the nearest parent that does.

    The backend creates ``path`` when it starts, so a parent that takes a file
    is enough. Returns ``"<path>: writable"`` (or ``"<path>: can be created
    in <parent>"``); raises :class:`OSError` saying which directory refused.
    """
    import tempfile

    directory = Path(path).absolute()
    existing = directory
    while not existing.is_dir():
        if existing.exists():
            raise NotADirectoryError(f"{directory}: {existing} is a file, not a directory")
        existing = existing.parent
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".tracelet-doctor-"):
            pass
    except OSError as error:
        raise PermissionError(f"{existing}: cannot write a file: {error.strerror or error}") from None
    return f"{directory}: writable" if existing == directory else f"{directory}: can be created in {existing}"


def _reason(error: object) -> str:
    """``connection refused``, ``timed out``: an OS error's words, not its repr."""
    import socket

    if isinstance(error, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__
