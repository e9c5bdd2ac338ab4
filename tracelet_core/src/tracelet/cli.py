"""The ``tracelet`` command: ``plugins``, ``config``, ``replay``, ``sync`` and ``new-plugin``."""

from __future__ import annotations

import argparse
import re
import string
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tracelet._version import __version__
from tracelet.assembly import configure
from tracelet.errors import ConfigError
from tracelet.plugins import discover
from tracelet.redact import MASK, Redactor, scrub

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11 on

__all__ = ["main", "write_plugin"]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows)


def _plugins() -> int:
    rows = [("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS")]
    for entry in sorted(discover(), key=lambda e: e.name):
        status: str = entry.status
        if entry.info is not None and not entry.info.enabled_by_default:
            status = "loaded (opt-in: use it by name)"
        if entry.error:
            status = f"failed: {entry.error}"
        rows.append((entry.name, entry.kind or "-", entry.distribution or "(registered)", entry.version or "-", status))
    print(_table(rows))
    return 0


def _config() -> int:
    """Print every setting, its value and its source; values of secret-looking keys and URL credentials masked."""
    try:
        resolved = configure({}).resolved
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Settings come from files and the environment: a token or a tracking URI with a password is shown masked.
    redactor = Redactor(resolved.core.redact_patterns)
    rows = [("KEY", "VALUE", "SOURCE")]
    for key, (value, source) in sorted(resolved.values.items()):
        shown = MASK if redactor.is_secret(key) else scrub(redactor.text(repr(value)))
        rows.append((key, shown, source.description))
    print(_table(rows))
    return 0


def _replay(path: str | None) -> int:
    from tracelet.replay import replay  # the command's own code, not needed by the others

    if path is None:
        try:
            path = configure({}).resolved.core.spool_dir
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        results = replay(Path(path))
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        for line in result.report():
            print(line, file=sys.stderr)
    if not results:
        print(f"nothing to replay in {Path(path).absolute()}", file=sys.stderr)
    # 1 when anything was not delivered: left in the spool, refused (kept in rejected/), or lost to a damaged segment
    return 0 if all(result.ok for result in results) else 1


def _sync(path: str | None, backends: list[str] | None) -> int:
    from tracelet.replay import sync  # the command's own code, not needed by the others

    try:
        root = Path(path if path is not None else configure({}).resolved.core.spool_dir)
        results = sync(root, backends=backends)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        for line in result.report():
            print(line, file=sys.stderr)
    if not results:
        print(f"nothing to sync in {root.absolute()}", file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1


_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_HOOK_MODULES = {"backend": "backend", "collector": "collector", "framework": "patch"}


def _add_new_plugin_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "new-plugin", help="write a ready plugin package (declaration, settings, hooks, README, tests) that passes its tests"
    )
    parser.add_argument("name", help="the plugin's name, lower case with hyphens (the package is tracelet-NAME)")
    parser.add_argument("--kind", required=True, choices=sorted(_HOOK_MODULES), help="what the plugin does")
    parser.add_argument("--dir", default=".", help="where to create tracelet-NAME/ (default: the working directory)")


def _new_plugin(name: str, kind: str, parent: str) -> int:
    try:
        created = write_plugin(name, kind, Path(parent))
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"created {created}")
    print(f"next: cd {created} && pip install -e '.[test]' && pytest")
    return 0


def write_plugin(name: str, kind: str, parent: Path) -> Path:
    """Write the package of a new ``kind`` plugin called ``name`` under ``parent``; return its directory.

    The package has the one shape every Tracelet plugin has (see
    ``tracelet/templates/README.md``) and passes its own tests as written; a
    backend's tests subclass :class:`tracelet.testing.conformance.BackendConformance`.
    Raises :class:`ValueError` for a bad name or kind, :class:`FileExistsError`
    when the directory exists.
    """
    from importlib.resources import files

    from tracelet._version import __version__

    plugin = name.removeprefix("tracelet-")
    if not _PLUGIN_NAME.fullmatch(plugin):
        raise ValueError(f"plugin name {name!r}: use lower-case letters, digits and single hyphens, starting with a letter")
    if kind not in _HOOK_MODULES:
        raise ValueError(f"kind {kind!r}: choose one of {', '.join(sorted(_HOOK_MODULES))}")
    package = f"tracelet_{plugin.replace('-', '_')}"
    major, minor = (int(part) for part in __version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"  # 0.x releases may break plugins at each minor
    values = {
        "name": plugin,
        "dist": f"tracelet-{plugin}",
        "package": package,
        "title": "".join(part.capitalize() for part in plugin.split("-")),
        "kind": kind,
        "module": _HOOK_MODULES[kind],
        "env_name": plugin.upper().replace("-", "_"),
        "core_requirement": f"tracelet-core>={major}.{minor},<{upper}",
        "conformance_note": ", Tracelet's backend conformance suite included" if kind == "backend" else "",
    }
    target = parent / values["dist"]
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    templates = files("tracelet") / "templates"
    for part in ("common", kind):
        _render(templates / part, target, values)
    return target


def _render(source: Traversable, target: Path, values: dict[str, str]) -> None:
    for entry in source.iterdir():
        name = entry.name.replace("__package__", values["package"])
        if entry.is_dir():
            _render(entry, target / name, values)
        elif name.endswith(".tmpl"):
            destination = target / name.removesuffix(".tmpl")
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(string.Template(entry.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracelet", description="Tracelet: one start(), every experiment tracker.")
    parser.add_argument("--version", action="version", version=f"tracelet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugins", help="list installed plugins: name, kind, distribution, version, status")
    commands.add_parser("config", help="show the resolved configuration and where each value comes from")
    replay = commands.add_parser("replay", help="deliver what earlier runs left in the spool, to the same backend runs")
    replay.add_argument("path", nargs="?", help="the spool directory (default: the spool_dir setting, .tracelet/spool)")
    sync = commands.add_parser(
        "sync", help="deliver offline runs (and what online runs left) to their backends, each record once"
    )
    sync.add_argument("path", nargs="?", help="the spool directory or one run's directory in it (default: spool_dir)")
    sync.add_argument(
        "--backend",
        action="append",
        dest="backends",
        metavar="NAME",
        help="deliver to this backend (repeatable; default: the backends each run was configured with)",
    )
    _add_new_plugin_command(commands)
    arguments = parser.parse_args(argv)
    if arguments.command == "new-plugin":
        return _new_plugin(arguments.name, arguments.kind, arguments.dir)
    if arguments.command == "plugins":
        return _plugins()
    if arguments.command == "replay":
        return _replay(arguments.path)
    if arguments.command == "sync":
        return _sync(arguments.path, arguments.backends)
    return _config()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
