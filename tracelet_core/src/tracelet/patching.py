"""Patching frameworks: post-import hooks, the per-run patch lifecycle, and helpers for plugin authors.

Core calls a framework plugin's ``tracelet_patch`` for each of its target
modules, at ``start()`` when the module is already imported, or on the
importing thread right after the module executes, through a finder on
``sys.meta_path`` (``builtins.__import__`` is never replaced). ``Run.watch``
hands a model to the framework plugins' ``tracelet_watch``. At ``stop()``
core removes the pending hooks, unwatches every model and calls
``tracelet_unpatch``.

Plugin authors use :class:`PatchSet` to replace attributes and restore the
originals identity-equal, and :func:`capture_errors` around their capture
code, so that an error in Tracelet's code is logged while an error raised by
the patched library reaches the user unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from tracelet.log import get_logger

if TYPE_CHECKING:
    from tracelet.run import Run

__all__ = ["FrameworkPatcher", "PatchSet", "capture_errors", "post_import_hooks"]

_log = get_logger()
_MISSING = object()


class PatchSet:
    """Attribute replacements that can be undone exactly.

    ``restore()`` puts back the very objects that were there (or deletes the
    attribute when it was inherited), in reverse order, so repeated
    patch/restore cycles never stack wrappers.
    """

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, object]] = []

    def replace(self, owner: Any, name: str, replacement: object) -> object:
        """Set ``owner.name = replacement`` and return the original (looked up normally)."""
        own = vars(owner).get(name, _MISSING) if hasattr(owner, "__dict__") else _MISSING
        original = getattr(owner, name)
        self._saved.append((owner, name, own))
        setattr(owner, name, replacement)
        return original

    def restore(self) -> None:
        while self._saved:
            owner, name, own = self._saved.pop()
            if own is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, own)

    def __bool__(self) -> bool:
        return bool(self._saved)


_logged_capture_errors: set[tuple[str, str]] = set()


@contextlib.contextmanager
def capture_errors(plugin: str, *, strict: bool = False) -> Iterator[None]:
    """Catch and log (once per distinct error) what Tracelet's capture code raises.

    Wrap only Tracelet's own code with it, never the call to the original
    function. With ``strict`` (tests), the error is raised instead.
    """
    try:
        yield
    except Exception as error:
        if strict:
            raise
        key = (plugin, f"{type(error).__name__}: {error}")
        if key not in _logged_capture_errors:
            _logged_capture_errors.add(key)
            _log.warning("capture failed; the training script is not affected", plugin=plugin, error=key[1], exc_info=error)


class _NotifyingLoader(importlib.abc.Loader):
    """Delegates to the real loader and reports the module once it has executed."""

    def __init__(self, loader: importlib.abc.Loader, on_loaded: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._on_loaded = on_loaded

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        # Hide ourselves again: the module should look exactly as if imported without us.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._on_loaded(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportHooks(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that calls back after watched modules are imported."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
        self._resolving = threading.local()

    def watch(self, module_name: str, callback: Callable[[ModuleType], None]) -> None:
        """Call ``callback(module)`` after ``module_name`` is next imported."""
        with self._lock:
            self._callbacks.setdefault(module_name, []).append(callback)
            if self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def unwatch(self, module_name: str, callback: Callable[[ModuleType], None]) -> None:
        with self._lock:
            callbacks = self._callbacks.get(module_name, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._callbacks.pop(module_name, None)
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._callbacks:
            return None
        resolving: set[str] = self._resolving.__dict__.setdefault("names", set())
        if fullname in resolving:
            return None
        resolving.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders, as the import would ask them
        finally:
            resolving.discard(fullname)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _NotifyingLoader(spec.loader, self._loaded)
        return spec

    def _loaded(self, module: ModuleType) -> None:
        with self._lock:
            callbacks = self._callbacks.pop(module.__name__, [])
            if not self._callbacks and self in sys.meta_path:
                sys.meta_path.remove(self)
        for callback in callbacks:
            callback(module)


post_import_hooks = _PostImportHooks()


class FrameworkPatcher:
    """Applies and removes one run's framework plugins.

    A failing hook is logged and skipped; in strict mode (tests) it raises.
    """

    def __init__(self, plugins: Sequence[tuple[str, pluggy.HookRelay]], run: Run, *, strict: bool) -> None:
        self._plugins = plugins
        self._run = run
        self._strict = strict
        self._lock = threading.Lock()
        self._patched: set[tuple[str, str]] = set()
        self._watching: list[tuple[str, Callable[[ModuleType], None]]] = []
        self._model_watchers: set[str] = set()  # plugins that took a tracelet.watch(): unwatched at stop
        self._stopped = False

    def start(self) -> None:
        for name, hooks in self._plugins:
            targets = self._call(name, hooks, "tracelet_patch_targets") or ()
            for target in targets:
                module = sys.modules.get(target)
                if module is not None:
                    self._patch(name, hooks, module)
                else:
                    callback = self._patch_later(name, hooks)
                    self._watching.append((target, callback))
                    post_import_hooks.watch(target, callback)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            patched_plugins = {name for name, _ in self._patched}
        for target, callback in self._watching:
            post_import_hooks.unwatch(target, callback)
        for name, hooks in self._plugins:
            if name in self._model_watchers:
                self._call(name, hooks, "tracelet_unwatch", run=self._run, model=None)
        for name, hooks in self._plugins:
            if name in patched_plugins:
                self._call(name, hooks, "tracelet_unpatch")

    def param_values(self, value: object) -> object:
        """``value`` converted by the first plugin whose ``tracelet_param_values`` returns a mapping, else ``value``."""
        for name, hooks in self._plugins:
            converted = None
            with capture_errors(name, strict=self._strict):  # logged once per distinct error, like capture code
                converted = hooks.tracelet_param_values(value=value)
            if isinstance(converted, Mapping):
                return converted
        return value

    def watch(self, model: object, log: str, every: int) -> bool:
        """Hand ``model`` to the first framework plugin whose ``tracelet_watch`` takes it.

        Returns ``False`` when none did; an error in a plugin's hook is
        logged and counts as taken (strict mode: raised), so the caller does
        not also report "nothing installed".
        """
        for name, hooks in self._plugins:
            try:
                handled = hooks.tracelet_watch(run=self._run, model=model, log=log, every=every)
            except Exception as error:
                if self._strict:
                    raise
                _log.warning(
                    "watch failed; the model is not watched",
                    plugin=name,
                    error=f"{type(error).__name__}: {error}",
                    exc_info=error,
                )
                return True
            if handled:
                self._model_watchers.add(name)
                return True
        return False

    def unwatch(self, model: object) -> None:
        """Ask the plugins watching models to stop watching ``model`` (``None``: every model)."""
        for name, hooks in self._plugins:
            if name not in self._model_watchers:
                continue
            try:
                if hooks.tracelet_unwatch(run=self._run, model=model) and model is not None:
                    return
            except Exception as error:
                if self._strict:
                    raise
                _log.warning("unwatch failed", plugin=name, error=f"{type(error).__name__}: {error}", exc_info=error)

    def _patch_later(self, name: str, hooks: pluggy.HookRelay) -> Callable[[ModuleType], None]:
        return lambda module: self._patch(name, hooks, module)

    def _patch(self, name: str, hooks: pluggy.HookRelay, module: ModuleType) -> None:
        with self._lock:
            if self._stopped or (name, module.__name__) in self._patched:
                return
            self._patched.add((name, module.__name__))
        self._call(name, hooks, "tracelet_patch", run=self._run, module=module)

    def _call(self, name: str, hooks: pluggy.HookRelay, hook_name: str, **arguments: object) -> Any:
        try:
            return getattr(hooks, hook_name)(**arguments)
        except Exception as error:
            if self._strict:
                raise
            _log.warning(
                "framework plugin hook failed",
                plugin=name,
                hook=hook_name,
                error=f"{type(error).__name__}: {error}",
                exc_info=error,
            )
            return None
