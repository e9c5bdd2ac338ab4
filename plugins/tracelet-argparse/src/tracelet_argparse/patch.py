"""The ``argparse`` plugin's hooks: what ``ArgumentParser`` parses becomes params of the run.

While a run is active, ``ArgumentParser.parse_args``, ``parse_known_args``,
``parse_intermixed_args`` and ``parse_known_intermixed_args`` are wrapped.
Only the outermost call on a thread captures (``parse_args`` calls
``parse_known_args``, a subcommand's parser is parsed inside its parent's
call), once the parse has returned: the namespace then holds the defaults,
the values given on the command line and the subcommands' arguments. A parse
that fails (``SystemExit`` from an error or ``--help``) captures nothing and
exits exactly as it would without Tracelet.

Several parses: the first captured namespace is logged as ``args.<dest>``
and the command line as the tag ``args.command_line``; each later parse whose
values differ from every one captured before is logged as
``args.<n>.<dest>`` (and ``args.<n>.command_line``), ``n`` = 2, 3, ... in
capture order, so no value of one parse hides another's. A parse that gives
values already captured logs nothing again; after ``max_parses`` distinct
parses (100) later ones are not captured (a warning says so once).

argparse is imported before any run starts, so core calls
:meth:`ArgparsePatcher.tracelet_patch` from ``start()``: the namespaces parsed
before then (held by the calling functions' variables or ``__main__``'s
globals) are captured there, in that order.
"""

from __future__ import annotations

import functools
import shlex
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType, ModuleType
from typing import Any

from tracelet.plugin import PatchSet, Run, capture_errors, get_logger, hookimpl
from tracelet_argparse.settings import PLUGIN_NAME, ArgparseSettings

__all__ = ["PARSE_METHODS", "ArgparsePatcher"]

_log = get_logger()
PARSE_METHODS = ("parse_args", "parse_known_args", "parse_intermixed_args", "parse_known_intermixed_args")


class _Depth(threading.local):
    """How many ``parse_*`` calls are running on this thread (only the outermost captures)."""

    def __init__(self) -> None:
        self.value = 0


class ArgparsePatcher:
    """Wraps ``argparse.ArgumentParser``'s parse methods for one run."""

    def __init__(self, settings: ArgparseSettings | None = None) -> None:
        self.settings = settings or ArgparseSettings()
        self._patches = PatchSet()
        self._depth = _Depth()
        self._lock = threading.Lock()
        self._warned = False
        self._seen: set[tuple[tuple[str, str], ...]] = set()  # each captured namespace, as comparable text

    @hookimpl
    def tracelet_patch_targets(self) -> list[str]:
        return ["argparse"]

    @hookimpl
    def tracelet_patch(self, run: Run, module: ModuleType) -> None:
        parser_class = module.ArgumentParser
        for name in PARSE_METHODS:
            if name in vars(parser_class):
                self._patches.replace(parser_class, name, self._wrap(run, getattr(parser_class, name)))
        if self.settings.existing:
            with capture_errors(PLUGIN_NAME, strict=run.strict):
                for namespace in _namespaces_in_scope(module.Namespace, sys._getframe(1), self.settings.skip_modules):
                    self._capture(run, vars(namespace), shlex.join(sys.argv))

    @hookimpl
    def tracelet_unpatch(self) -> None:
        self._patches.restore()

    def _wrap(self, run: Run, original: Callable[..., Any]) -> Callable[..., Any]:
        depth = self._depth

        @functools.wraps(original)
        def parse(parser: Any, *args: Any, **kwargs: Any) -> Any:
            outer = depth.value
            depth.value = outer + 1
            try:
                result = original(parser, *args, **kwargs)
            finally:
                depth.value = outer
            if outer == 0:
                with capture_errors(PLUGIN_NAME, strict=run.strict):
                    self._captured_call(run, parser, args[0] if args else kwargs.get("args"), result)
            return result

        return parse

    def _captured_call(self, run: Run, parser: Any, argv: Any, result: Any) -> None:
        skip = self.settings.skip_modules
        owned = any(_in_packages(cls.__module__, skip) for cls in type(parser).__mro__)  # jsonargparse's subclasses
        if owned or _in_packages(_caller_module(sys._getframe(2)), skip):
            return
        namespace = result[0] if type(result) is tuple else result
        # argparse read sys.argv[1:] when no args were given
        command = shlex.join(sys.argv) if argv is None else shlex.join([str(parser.prog), *map(str, argv)])
        self._capture(run, vars(namespace), command)

    def _capture(self, run: Run, values: Mapping[str, Any], command: str) -> None:
        values = dict(values)  # the namespace may change later: log what the parse returned
        key = tuple(sorted((str(name), repr(value)) for name, value in values.items()))
        with self._lock:
            if key in self._seen:
                return
            if len(self._seen) >= self.settings.max_parses:
                if not self._warned:
                    self._warned = True
                    _log.warning(
                        "argparse: more distinct parses than max_parses; later ones are not captured",
                        plugin=PLUGIN_NAME,
                        max_parses=self.settings.max_parses,
                    )
                return
            self._seen.add(key)
            number = len(self._seen)
        prefix = self.settings.prefix if number == 1 else f"{self.settings.prefix}.{number}"
        run.log_params({f"{prefix}.{name}": value for name, value in values.items()})
        if self.settings.command_line:
            run.set_tags({f"{prefix}.command_line": command})


def _namespaces_in_scope(namespace_class: type, frame: FrameType | None, skip: tuple[str, ...]) -> list[object]:
    """The namespaces held by the variables of ``frame`` and its callers, then by ``__main__``'s globals.

    Frames of the ``skip`` packages are passed over (Hydra's own parsed command line, for one).
    """
    found: dict[int, object] = {}
    scopes: list[dict[str, Any]] = []
    while frame is not None:
        if not _in_packages(_caller_module(frame), skip):
            scopes.append(frame.f_locals)
        frame = frame.f_back
    main = sys.modules.get("__main__")
    if main is not None:
        scopes.append(vars(main))
    for scope in scopes:
        for value in list(scope.values()):
            if isinstance(value, namespace_class) and id(value) not in found:
                found[id(value)] = value
    return list(found.values())


def _caller_module(frame: FrameType | None) -> str:
    return str(frame.f_globals.get("__name__", "")) if frame is not None else ""


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)
