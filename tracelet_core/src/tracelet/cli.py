"""The ``tracelet`` command: ``plugins``, ``config``, ``doctor``, ``replay``, ``sync`` and ``new-plugin``.

Tables and progress bars are drawn by :mod:`tracelet.console` (rich, imported
only when a command draws); ``doctor``'s checks are in :mod:`tracelet.doctor`.
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tracelet._version import __version__
from tracelet.assembly import configure
from tracelet.errors import ConfigError
from tracelet.plugins import discover

if TYPE_CHECKING:
    from importlib.abc import Traversable  # importlib.resources.abc from Python 3.11 on

    from tracelet.doctor import DoctorReport
    from tracelet.replay import ReplayResult

__all__ = ["main", "write_plugin"]


def _plugins(wide: bool) -> int:
    from tracelet.console import print_table

    rows = []
    for entry in sorted(discover(), key=lambda e: e.name):
        status: str = entry.status
        if entry.info is not None and not entry.info.enabled_by_default:
            status = "loaded (opt-in: use it by name)"
        if entry.error:
            status = f"failed: {entry.error}"
        rows.append((entry.name, entry.kind or "-", entry.distribution or "(registered)", entry.version or "-", status))
    print_table(("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS"), rows, wide=wide)
    return 0


def _config(wide: bool, as_json: bool) -> int:
    """Print every setting, its value and its source; values of secret-looking keys and URL credentials masked."""
    from tracelet.doctor import settings_shown

    try:
        resolved = configure({}).resolved
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    settings = settings_shown(resolved)
    if as_json:
        print(json.dumps([setting.to_json() for setting in settings], indent=2))
        return 0
    from tracelet.console import print_table

    print_table(("KEY", "VALUE", "SOURCE"), [(setting.key, setting.value, setting.source) for setting in settings], wide=wide)
    return 0


def _doctor(timeout: float, as_json: bool, wide: bool) -> int:
    from tracelet.doctor import diagnose

    report = diagnose(timeout)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_doctor(report, wide)
    if report.config_error is not None:
        return 2
    return 0 if report.healthy else 1


def _print_doctor(report: DoctorReport, wide: bool) -> None:
    from tracelet.console import print_table
    from tracelet.doctor import format_age, format_size

    print("plugins:")
    rows = [(p.name, p.kind or "-", p.status + (f": {p.error}" if p.error else "")) for p in report.plugins]
    print_table(("NAME", "KIND", "STATUS"), rows, wide=wide, indent=2)
    if report.config_error is not None:
        print(f"\nconfiguration: error: {report.config_error}")
    else:
        print("\nbackends start() would use:" if report.backends else "\nbackends start() would use: none")
        for check in report.backends:
            print(f"\n{check.name}: {check.status} ({check.seconds:.2f} s): {check.detail}")
            settings = [(setting.key, setting.value, setting.source) for setting in check.settings]
            print_table(("SETTING", "VALUE", "SOURCE"), settings, wide=wide, indent=2)
        if report.spools:
            how = "`tracelet replay` delivers them; `tracelet sync` the @offline ones"
            print(f"\nspools left behind in {report.spool_dir} ({how}):")
            spool_rows = [
                (
                    spool.run_id,
                    spool.backend,
                    format_size(spool.bytes),
                    format_age(spool.age_seconds),
                    "in use" if spool.in_use else "",
                )
                for spool in report.spools
            ]
            print_table(("RUN", "BACKEND", "SIZE", "AGE", "STATE"), spool_rows, wide=wide, indent=2)
        else:
            print(f"\nspools left behind in {report.spool_dir}: none")
    print()
    if report.healthy:
        print("healthy: a start() here can deliver to every backend it uses")
    else:
        print("unhealthy:")
        for problem in report.problems:
            print(f"  {problem}")


def _replay(path: str | None) -> int:
    from tracelet.replay import replay  # the command's own code, not needed by the others

    return _deliver("replay", path, replay)


def _sync(path: str | None, backends: list[str] | None) -> int:
    from tracelet.replay import sync  # the command's own code, not needed by the others

    return _deliver("sync", path, lambda root: sync(root, backends=backends))


def _deliver(command: str, path: str | None, deliver: Callable[[Path], list[ReplayResult]]) -> int:
    """``deliver`` the spools under ``path`` (default: the spool_dir setting) and report each result on stderr."""
    try:
        root = Path(path if path is not None else configure({}).resolved.core.spool_dir)
        results = deliver(root)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        for line in result.report():
            print(line, file=sys.stderr)
    if not results:
        print(f"nothing to {command} in {root.absolute()}", file=sys.stderr)
    # 1 when anything was not delivered: left in the spool, refused (kept in rejected/), or lost to a damaged segment
    return 0 if all(result.ok for result in results) else 1


_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_HOOK_MODULES = {"backend": "backend", "collector": "collector", "framework": "patch"}


def _add_new_plugin_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = _command(
        commands,
        "new-plugin",
        "write a new plugin package that passes its tests",
        "  tracelet new-plugin my-store --kind backend\n  tracelet new-plugin gpu-temp --kind collector --dir plugins\n",
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


_EPILOG = """\
examples:
  tracelet doctor              check plugins, backends and spools before a job
  tracelet doctor --json       the same for a script (exit code 0: healthy)
  tracelet config              each setting's value and where it comes from
  tracelet replay              deliver what earlier runs left undelivered
  tracelet sync                deliver offline runs to their backends
  tracelet new-plugin my-store --kind backend

'tracelet <command> --help' shows a command's options and examples.
The documentation's "Command line" page (docs/cli.md) describes each command.
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help like git's: the commands one per line under "commands:", examples kept as written."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # its commands, without a "<command>" line above them
            return "".join(self._format_action(command) for command in action._get_subactions())
        return super()._format_action(action)


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, examples: str
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` is its line in ``tracelet --help`` and the top of its own help."""
    return commands.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog="examples:\n" + examples,
        formatter_class=_HelpFormatter,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracelet",
        usage="tracelet [--version] [--help] <command> [<args>]",
        description="Tracelet: one start(), every experiment tracker.",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tracelet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, title="commands", metavar="<command>", prog="tracelet")
    wide = {"action": "store_true", "help": "print long values whole, on one line, whatever the terminal's width"}

    plugins = _command(
        commands,
        "plugins",
        "list installed plugins and whether they loaded",
        "  tracelet plugins\n  TRACELET_DISABLE_PLUGINS=wandb tracelet plugins\n",
    )
    plugins.add_argument("--wide", **wide)  # type: ignore[arg-type]

    config = _command(
        commands,
        "config",
        "show the configuration and where each value comes from",
        "  tracelet config\n  tracelet config --wide | grep mlflow\n  tracelet config --json\n",
    )
    config.add_argument("--wide", **wide)  # type: ignore[arg-type]
    config.add_argument("--json", action="store_true", help="print a JSON list of {key, value, source}")

    doctor = _command(
        commands,
        "doctor",
        "check that a run started here can reach every backend",
        "  tracelet doctor\n  tracelet doctor --timeout 10 --json > doctor.json\n"
        "  tracelet doctor && python train.py    # exit code 0: healthy, 1: unhealthy, 2: bad configuration\n",
    )
    doctor.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds each backend's check may take (default: 5)"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (schema in the docs' CLI page)")
    doctor.add_argument("--wide", **wide)  # type: ignore[arg-type]

    replay = _command(
        commands,
        "replay",
        "deliver what earlier runs left in the spool",
        "  tracelet replay\n  tracelet replay /scratch/job-42/.tracelet/spool\n",
    )
    replay.add_argument("path", nargs="?", help="the spool directory (default: the spool_dir setting, .tracelet/spool)")
    sync = _command(
        commands,
        "sync",
        "deliver offline runs to their backends, each record once",
        "  tracelet sync\n  tracelet sync --backend mlflow --backend wandb\n"
        "  tracelet sync .tracelet/spool/<run id> --backend wandb\n",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tracelet`` command with ``argv`` (default: ``sys.argv[1:]``); return its exit code."""
    arguments = _parser().parse_args(argv)
    if arguments.command == "new-plugin":
        return _new_plugin(arguments.name, arguments.kind, arguments.dir)
    if arguments.command == "plugins":
        return _plugins(arguments.wide)
    if arguments.command == "doctor":
        if arguments.timeout <= 0:
            print("error: --timeout must be more than 0 seconds", file=sys.stderr)
            return 2
        return _doctor(arguments.timeout, arguments.json, arguments.wide)
    if arguments.command == "replay":
        return _replay(arguments.path)
    if arguments.command == "sync":
        return _sync(arguments.path, arguments.backends)
    return _config(arguments.wide, arguments.json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
