"""Finding, loading and listing plugins.

Plugins come from the ``tracelet`` entry-point group, loaded one at a time so
that one that fails to import is reported and skipped while the others load,
and from :func:`register_plugin` (tests, notebooks). Nothing else is ever
imported or executed: no plugin directories, no file scanning.

``TRACELET_PLUGINS=a,b`` loads only the named plugins and
``TRACELET_DISABLE_PLUGINS=a,b`` skips the named ones; a plugin that is
skipped is not even imported.

A plugin that fails to load is reported with its cause: the error, the file
and line in the plugin's own code where it was raised (``PluginEntry.error``),
the traceback on the ``tracelet`` logger at DEBUG, and the exception itself
(``PluginEntry.exception``) for callers that raise, to chain.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Literal

import attrs
import pluggy

from tracelet import hookspecs
from tracelet.info import PluginInfo
from tracelet.log import get_logger

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginEntry",
    "discover",
    "hooks_of",
    "new_plugin_manager",
    "register_plugin",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "tracelet"

_log = get_logger()

PluginStatus = Literal["loaded", "failed", "disabled"]


@attrs.frozen
class PluginEntry:
    """One plugin as discovered: what ``tracelet plugins`` lists."""

    name: str
    distribution: str | None
    version: str | None
    status: PluginStatus
    info: PluginInfo | None = None
    error: str | None = None
    """Why it failed: ``"KeyError: 'missing_key' (at /path/plugin.py:12)"``."""
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    """The exception that made it fail, to chain (``raise PluginError(...) from entry.exception``)."""

    @property
    def kind(self) -> str | None:
        return self.info.kind.value if self.info else None


def new_plugin_manager() -> pluggy.PluginManager:
    """A plugin manager that knows every Tracelet hookspec."""
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def hooks_of(instance: object, name: str) -> pluggy.HookRelay:
    """The hooks of one plugin object (a backend for a run), in a plugin manager of its own."""
    manager = new_plugin_manager()
    manager.register(instance, name=name)
    manager.check_pending()
    return manager.hook


def plugin_info_of(plugin: object, name: str | None = None) -> PluginInfo:
    """Validate ``plugin``'s hooks and return what its ``tracelet_plugin_info`` declares.

    Raises :class:`pluggy.PluginValidationError` for a misspelled or
    ill-formed hookimpl and :class:`TypeError` for a bad declaration.
    """
    manager = new_plugin_manager()
    manager.register(plugin, name=name)
    manager.check_pending()
    info = manager.hook.tracelet_plugin_info()
    if not isinstance(info, PluginInfo):
        raise TypeError(f"tracelet_plugin_info() returned {info!r}; expected a tracelet.PluginInfo")
    if name is not None and info.name != name:
        raise TypeError(f"the plugin declares the name {info.name!r} but its entry point is named {name!r}")
    _check_factory_class(plugin, info)
    return info


def _check_factory_class(plugin: object, info: PluginInfo) -> None:
    """Refuse a misspelled hookimpl on the per-run object's class, found without calling the factory.

    Only possible when ``factory`` is the class itself; a factory function's
    object is checked when a run creates it (``hooks_of``).
    """
    factory = info.factory
    if not isinstance(factory, type):
        return
    known = {name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT_NAME}_")}
    for attribute in dir(factory):
        implementation = getattr(factory, attribute, None)
        if getattr(implementation, f"{hookspecs.PROJECT_NAME}_impl", None) is not None and attribute not in known:
            raise pluggy.PluginValidationError(
                plugin,
                f"{factory.__module__}.{factory.__qualname__}.{attribute} is marked @hookimpl but is not a "
                f"tracelet hook (misspelled?); plugin {info.name!r} would never have it called",
            )


def _names_from_env(variable: str) -> frozenset[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class _Registry:
    """Process-wide cache of discovered plugins, re-read when the filters change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._discovered: tuple[object, tuple[PluginEntry, ...]] | None = None
        self._registered: dict[str, PluginInfo] = {}

    def discover(self, refresh: bool) -> tuple[PluginEntry, ...]:
        only = _names_from_env("TRACELET_PLUGINS")
        disabled = _names_from_env("TRACELET_DISABLE_PLUGINS") or frozenset()
        key = (only, disabled)
        with self._lock:
            if refresh or self._discovered is None or self._discovered[0] != key:
                self._discovered = (key, tuple(_load_entry_points(only, disabled)))
            entries = list(self._discovered[1])
            loaded = {entry.name for entry in entries}
            for name, info in self._registered.items():
                if name not in loaded:
                    entries.append(PluginEntry(name, None, None, "loaded", info))
        return tuple(entries)

    def register(self, plugin: object) -> PluginInfo:
        info = plugin_info_of(plugin)
        with self._lock:
            self._registered[info.name] = info
        return info

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)


def _load_entry_points(only: frozenset[str] | None, disabled: frozenset[str]) -> list[PluginEntry]:
    from importlib import metadata  # 7 ms with its email/zipfile imports: paid at discovery, not at import

    entries: list[PluginEntry] = []
    seen: set[str] = set()
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        distribution = dist.name if dist else None
        version = dist.version if dist else None
        name = entry_point.name
        if name in seen:
            entries.append(
                PluginEntry(
                    name, distribution, version, "failed", error=f"another distribution already provides a plugin named {name!r}"
                )
            )
            continue
        seen.add(name)
        if name in disabled or (only is not None and name not in only):
            entries.append(PluginEntry(name, distribution, version, "disabled"))
            continue
        try:
            info = plugin_info_of(entry_point.load(), name)
        except Exception as error:  # noqa: BLE001 - any failure of a plugin's import must not stop the others
            message = describe_failure(error, entry_point.module)
            # Not "skipped": in strict mode start() raises next, chained to this error.
            _log.warning("plugin failed to load", plugin=name, distribution=distribution, error=message)
            _log.debug("traceback of the plugin load failure", plugin=name, exc_info=error)
            entries.append(PluginEntry(name, distribution, version, "failed", error=message, exception=error))
        else:
            entries.append(PluginEntry(name, distribution, version, "loaded", info))
    return entries


def describe_failure(error: BaseException, module: str) -> str:
    """``"KeyError: 'x' (at /path/plugin.py:12)"``: the error and where the plugin's code raised it.

    The place is the deepest frame of the traceback in the plugin's top-level
    package (the line of its failing import or statement), else the deepest
    frame that is not importlib's own.
    """
    package = module.split(".", 1)[0]
    in_plugin = elsewhere = None
    traceback: TracebackType | None = error.__traceback__
    while traceback is not None:
        code = traceback.tb_frame.f_code
        place = f"{code.co_filename}:{traceback.tb_lineno}"
        if not code.co_filename.startswith("<"):
            elsewhere = place
            name = traceback.tb_frame.f_globals.get("__name__", "")
            if isinstance(name, str) and (name == package or name.startswith(package + ".")):
                in_plugin = place
        traceback = traceback.tb_next
    where = in_plugin or elsewhere
    return f"{type(error).__name__}: {error}" + (f" (at {where})" if where else "")


_registry = _Registry()


def discover(*, refresh: bool = False) -> tuple[PluginEntry, ...]:
    """Every known plugin: loaded, failed or disabled.

    Cached per process (and per value of the two filter variables);
    ``refresh=True`` reads the entry points again, e.g. after installing a
    plugin in a running notebook.
    """
    return _registry.discover(refresh)


def loaded_plugins() -> Mapping[str, PluginInfo]:
    """The plugins that loaded, by name."""
    return {entry.name: entry.info for entry in discover() if entry.info is not None}


def register_plugin(plugin: object) -> PluginInfo:
    """Make ``plugin`` (an object with a ``tracelet_plugin_info`` hookimpl) available to later runs.

    For tests and notebooks; installed packages use the ``tracelet``
    entry-point group instead. Raises if the plugin's hooks are invalid.
    """
    return _registry.register(plugin)


def unregister_plugin(name: str) -> None:
    """Forget a plugin added with :func:`register_plugin`; unknown names are ignored."""
    _registry.unregister(name)
