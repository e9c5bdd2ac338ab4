"""The ``tracelet`` command: ``tracelet plugins``, ``tracelet config`` and ``tracelet replay``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tracelet._version import __version__
from tracelet.config import resolve_config
from tracelet.errors import ConfigError
from tracelet.plugins import discover
from tracelet.redact import MASK, Redactor, scrub

__all__ = ["main"]


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
    entries = discover()
    loaded = {entry.name: entry.info for entry in entries if entry.info is not None}
    ignored = frozenset(entry.name for entry in entries if entry.info is None)
    try:
        resolved = resolve_config(loaded, {}, ignored_plugins=ignored)
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
        entries = discover()
        loaded = {entry.name: entry.info for entry in entries if entry.info is not None}
        ignored = frozenset(entry.name for entry in entries if entry.info is None)
        try:
            path = resolve_config(loaded, {}, ignored_plugins=ignored).core.spool_dir
        except ConfigError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    results = replay(Path(path))
    for result in results:
        outcome = f"left in the spool: {result.error}" if result.left else "done"
        print(f"{result.backend} run {result.run_id}: {result.sent} records sent, {outcome}", file=sys.stderr)
    if not results:
        print(f"nothing to replay in {Path(path).absolute()}", file=sys.stderr)
    return 1 if any(result.left for result in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracelet", description="Tracelet: one start(), every experiment tracker.")
    parser.add_argument("--version", action="version", version=f"tracelet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugins", help="list installed plugins: name, kind, distribution, version, status")
    commands.add_parser("config", help="show the resolved configuration and where each value comes from")
    replay = commands.add_parser("replay", help="deliver what earlier runs left in the spool, to the same backend runs")
    replay.add_argument("path", nargs="?", help="the spool directory (default: the spool_dir setting, .tracelet/spool)")
    arguments = parser.parse_args(argv)
    if arguments.command == "plugins":
        return _plugins()
    if arguments.command == "replay":
        return _replay(arguments.path)
    return _config()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
