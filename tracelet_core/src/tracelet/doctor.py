"""``tracelet doctor``: can a ``start()`` here deliver? Checked before a long job, not discovered after it.

:func:`diagnose` looks at what ``start()`` would use, with today's
configuration (files, environment) in the working directory:

- every installed plugin: loaded, disabled, or why it failed to load;
- every backend ``start()`` would deliver to: its settings with their sources,
  and whether it reaches its store. That is the backend's
  ``tracelet_backend_check`` hook (see :mod:`tracelet.hookspecs`), called on
  an object made for the check, on a thread of its own, all backends at once,
  each given ``timeout`` seconds; a backend still busy :data:`GRACE` seconds
  later is reported as not answering, so the whole check takes ``timeout +
  GRACE`` seconds at most (plus discovery);
- the spools earlier runs left behind (undelivered records): their size, age
  and whether a live process still holds them.

The report is healthy when the configuration resolves, no plugin failed to
load (``start()`` skips it, or raises in strict mode) and every backend
``start()`` would use answered its check or has no check hook. Spools left
behind are listed, never unhealthy: ``tracelet replay`` delivers them.
:meth:`DoctorReport.to_json` is the ``--json`` document; its schema is
documented in ``docs/cli.md`` and versioned by :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Literal

import attrs

from tracelet._version import __version__
from tracelet.errors import ConfigError
from tracelet.info import PluginKind

__all__ = [
    "GRACE",
    "SCHEMA_VERSION",
    "BackendCheck",
    "DoctorReport",
    "PluginState",
    "Setting",
    "SpoolLeft",
    "diagnose",
    "settings_shown",
]

GRACE = 0.5
"""Seconds ``diagnose`` waits past ``timeout`` for a check: a hook that bounds its own connections by
``timeout`` reports its own reason (``timed out``), one that does not is reported as not answering."""

SCHEMA_VERSION = 1
"""Version of the ``--json`` document: raised when a field changes meaning or goes away (new fields may come)."""

CheckStatus = Literal["ok", "failed", "timeout", "not checked"]


@attrs.frozen
class PluginState:
    """One installed plugin, as ``tracelet plugins`` lists it."""

    name: str
    kind: str | None
    distribution: str | None
    version: str | None
    status: str
    """``loaded``, ``disabled`` (``TRACELET_PLUGINS`` / ``TRACELET_DISABLE_PLUGINS``) or ``failed``."""
    error: str | None
    """Why it failed to load: the error and where the plugin raised it."""


@attrs.frozen
class Setting:
    """One setting: its dotted key, its value as shown (secrets masked) and its source."""

    key: str
    value: str
    """As ``tracelet config`` shows it: the Python repr, credentials masked."""
    source: str
    json_value: object = None
    """The value as JSON (strings, numbers, booleans, null, lists, objects), credentials masked."""

    def to_json(self) -> dict[str, object]:
        """``{"key", "value", "source"}``, the value as JSON."""
        return {"key": self.key, "value": self.json_value, "source": self.source}


@attrs.frozen
class BackendCheck:
    """One backend ``start()`` would deliver to, and the outcome of its check."""

    name: str
    status: CheckStatus
    detail: str
    """What answered (``ok``), the reason (``failed``, ``timeout``), or why it was not checked."""
    seconds: float
    """How long the check took (``timeout`` for one that did not answer)."""
    settings: tuple[Setting, ...]

    @property
    def healthy(self) -> bool:
        return self.status in ("ok", "not checked")


@attrs.frozen
class SpoolLeft:
    """A spool directory an earlier run left: records not delivered to one backend."""

    path: str
    run_id: str
    backend: str
    bytes: int
    """Size of every file in it (segments, the rejected part, metadata)."""
    age_seconds: float
    """Seconds since it was last written."""
    in_use: bool
    """A live process holds it (a run still delivering): ``tracelet replay`` leaves it alone."""


@attrs.frozen
class DoctorReport:
    """What :func:`diagnose` found."""

    plugins: tuple[PluginState, ...]
    backends: tuple[BackendCheck, ...]
    spool_dir: str | None
    spools: tuple[SpoolLeft, ...]
    config_error: str | None
    """Why the configuration does not resolve (``start()`` would raise :class:`~tracelet.errors.ConfigError`)."""
    timeout: float

    @property
    def problems(self) -> list[str]:
        """One line per reason the report is not healthy, in the order shown."""
        found = [f"configuration: {self.config_error}"] if self.config_error else []
        found += [f"plugin {plugin.name} failed to load: {plugin.error}" for plugin in self.plugins if plugin.status == "failed"]
        found += [f"backend {check.name}: {check.detail}" for check in self.backends if not check.healthy]
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The ``tracelet doctor --json`` document (``docs/cli.md`` describes every field)."""
        return {
            "schema": SCHEMA_VERSION,
            "tracelet_version": __version__,
            "healthy": self.healthy,
            "problems": self.problems,
            "config_error": self.config_error,
            "timeout": self.timeout,
            "plugins": [attrs.asdict(plugin) for plugin in self.plugins],
            "backends": [
                {
                    "name": check.name,
                    "status": check.status,
                    "healthy": check.healthy,
                    "detail": check.detail,
                    "seconds": round(check.seconds, 3),
                    "settings": [setting.to_json() for setting in check.settings],
                }
                for check in self.backends
            ],
            "spool_dir": self.spool_dir,
            "spools": [attrs.asdict(spool) for spool in self.spools],
        }


def diagnose(timeout: float = 5.0) -> DoctorReport:
    """Check what a ``start()`` in this directory would use; see the module docstring."""
    from tracelet.assembly import _select_plugins, configure
    from tracelet.plugins import discover

    plugins = tuple(
        PluginState(entry.name, entry.kind, entry.distribution, entry.version, entry.status, entry.error)
        for entry in sorted(discover(), key=lambda entry: entry.name)
    )
    try:
        configured = configure({})
        selected = _select_plugins(configured.loaded, configured.resolved)
    except ConfigError as error:
        return DoctorReport(plugins, (), None, (), str(error), timeout)
    resolved = configured.resolved
    backends = [info for info in selected if info.kind is PluginKind.BACKEND]
    checks = _check_all(
        [(info.name, info.factory, resolved.plugin_settings[info.name]) for info in backends],
        timeout,
    )
    shown = settings_shown(resolved)
    report_backends = tuple(
        attrs.evolve(check, settings=tuple(setting for setting in shown if setting.key.startswith(check.name + ".")))
        for check in checks
    )
    spool_dir = Path(resolved.core.spool_dir).absolute()
    return DoctorReport(plugins, report_backends, str(spool_dir), tuple(_spools_left(spool_dir)), None, timeout)


def settings_shown(resolved: Any) -> list[Setting]:
    """Every setting of ``resolved`` (a ``ResolvedConfig``), as ``tracelet config`` shows it, sorted by key.

    Settings come from files and the environment: a secret-looking key's value
    is masked whole, credentials in URLs and secret-looking words in text are
    masked (``tracelet.redact``).
    """
    from tracelet.redact import MASK, Redactor, scrub

    redactor = Redactor(resolved.core.redact_patterns)

    def jsonable(value: object) -> object:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return scrub(redactor.text(value))
        if isinstance(value, (list, tuple)):
            return [jsonable(item) for item in value]
        if isinstance(value, dict):
            return {str(key): jsonable(item) for key, item in value.items()}
        return scrub(redactor.text(repr(value)))

    shown = []
    for key, (value, source) in sorted(resolved.values.items()):
        secret = redactor.is_secret(key)
        shown.append(
            Setting(
                key,
                MASK if secret else scrub(redactor.text(repr(value))),
                source.description,
                MASK if secret else jsonable(value),
            )
        )
    return shown


class _Check(threading.Thread):
    """One backend's check on a daemon thread: a check that hangs is abandoned, never waited for past the timeout."""

    def __init__(self, name: str, factory: Any, settings: object, timeout: float) -> None:
        super().__init__(name=f"tracelet-doctor-{name}", daemon=True)
        self.backend = name
        self._factory = factory
        self._settings = settings
        self._timeout = timeout
        self.outcome: tuple[CheckStatus, str] | None = None
        self.seconds = 0.0

    def run(self) -> None:
        from tracelet.plugins import hooks_of

        started = time.monotonic()
        try:
            hooks = hooks_of(self._factory(self._settings), self.backend)
            if not hooks.tracelet_backend_check.get_hookimpls():
                self.outcome = ("not checked", "the plugin has no tracelet_backend_check hook")
            else:
                answer = hooks.tracelet_backend_check(timeout=self._timeout)
                self.outcome = ("ok", str(answer) if answer is not None else "OK")
        except Exception as error:  # noqa: BLE001 - the reason is the report
            message = str(error) or type(error).__name__
            self.outcome = (
                "failed",
                message if message.startswith(type(error).__name__) else f"{type(error).__name__}: {message}",
            )
        finally:
            self.seconds = time.monotonic() - started


def _check_all(backends: list[tuple[str, Any, object]], timeout: float) -> list[BackendCheck]:
    threads = [_Check(name, factory, settings, timeout) for name, factory, settings in backends]
    deadline = time.monotonic() + timeout + GRACE
    for thread in threads:
        thread.start()
    checks = []
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        outcome = thread.outcome
        if outcome is None:  # still busy: abandoned (a daemon thread does not hold the process's exit)
            checks.append(BackendCheck(thread.backend, "timeout", f"no answer within {timeout:g} s", timeout + GRACE, ()))
        else:
            checks.append(BackendCheck(thread.backend, outcome[0], outcome[1], thread.seconds, ()))
    return checks


def _spools_left(root: Path) -> list[SpoolLeft]:
    from tracelet.replay import _placeholder_run
    from tracelet.spool import BackendSpool, find_offline_spools, find_spools

    found = []
    now = time.time()
    # an offline run's spool shows as backend "@offline": `tracelet sync` delivers it
    for directory in [*find_spools(root), *find_offline_spools(root)]:
        size, newest = 0, 0.0
        for path in directory.rglob("*"):
            try:
                status = path.stat()
            except OSError:  # removed meanwhile (a replay finished it)
                continue
            if path.is_file():
                size += status.st_size
            newest = max(newest, status.st_mtime)
        probe = BackendSpool(directory, _placeholder_run(), directory.name, fsync_interval=0.0, create_lock=False)
        in_use = not probe.acquire()
        if not in_use:
            probe.release()
        found.append(SpoolLeft(str(directory), directory.parent.name, directory.name, size, max(0.0, now - newest), in_use))
    return found


def format_size(size: int) -> str:
    """``512 B``, ``3.4 KiB``, ``12.0 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def format_age(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d`` (rounded down)."""
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"
